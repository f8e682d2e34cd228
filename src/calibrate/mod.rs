//! Gate quality (`posim calibrate`): the runbook's canary gate judged on the
//! simulator over many seeds — how often it rolls back a sound build (false
//! rollback), how often it lets a bad build reach 100% (false promote), and
//! how long it takes to catch one — with the settings (`min_samples`,
//! `hold`, `hold_max`) that would reach a target false-alarm rate.
//!
//! The scenario runs as written (no per-seed fault mix, as `posim swarm
//! --no-mix`), once per seed and build; a bad build is the scenario with a
//! per-phase bad build on its deploys (`builds`). Nothing here judges a
//! window: the controller does, and this module only counts its decisions.

use serde::{Deserialize, Serialize};

use crate::progress::{Measure, Progress};
use crate::scenario::Scenario;
use crate::sim::{self, SimOptions};
use crate::stack::BugSet;

pub mod builds;
pub mod report;
pub mod suggest;
pub mod tally;

use builds::{AIM_MULTIPLE, Build, BuildChoice, DUPLICATE_UNIT};
use suggest::Suggestion;
use tally::{BuildTally, Observed, Proportion, Spread};

/// 1: the first format of `calibration.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// The aim for a bad build at 2× cap or more: reaches 100% at most this often.
pub const FALSE_PROMOTE_AIM: f64 = 0.01;

/// What a calibration runs.
#[derive(Clone, Debug)]
pub struct CalibrateConfig {
    pub seeds: Seeds,
    /// The sound build's false-rollback rate to reach (a share).
    pub target_false_alarm: f64,
    /// Which builds (empty: the whole family).
    pub builds: Vec<BuildChoice>,
    /// Seeds per candidate setting of the search (0: no search).
    pub candidate_seeds: u64,
}

/// Seeds `first..first + count`, on `jobs` threads.
#[derive(Clone, Copy, Debug)]
pub struct Seeds {
    pub first: u64,
    pub count: u64,
    pub jobs: usize,
}

/// One scenario to run over the seeds, and the build it stands for.
pub struct Case {
    pub scenario: Scenario,
    pub build: Build,
}

/// Runs every case over the seeds on the swarm's pool, `seed`-major within
/// a case; `ran` hears how many runs are done. Tallies in case order.
pub fn run_cases(cases: &[Case], seeds: &Seeds, ran: &dyn Fn(u64)) -> Vec<BuildTally> {
    let mut tallies: Vec<BuildTally> = cases.iter().map(|case| BuildTally::new(case.scenario.phases.len())).collect();
    // The caller bounds seeds × cases (checked when the config is made).
    let total = seeds.count.saturating_mul(cases.len() as u64);
    let threads = seeds.jobs.clamp(1, usize::try_from(total).unwrap_or(usize::MAX).max(1));
    let work = |index: u64| {
        let case = (index / seeds.count) as usize;
        let seed = seeds.first.saturating_add(index % seeds.count);
        let Case { scenario, build } = &cases[case];
        let outcome = sim::run(scenario, SimOptions { seed, bugs: BugSet::default() });
        (case, seed, Observed::of(&outcome.history, build))
    };
    let mut done = 0;
    crate::pool::run(total, threads, work, |(case, seed, observed)| {
        tallies[case].add(seed, &observed);
        done += 1;
        ran(done);
        true
    });
    tallies
}

/// The whole calibration: what `calibration.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema_version: u32,
    pub posim_version: String,
    pub scenario: String,
    pub first_seed: u64,
    pub seeds: u64,
    pub phases: Vec<String>,
    pub target_false_alarm: f64,
    pub false_promote_aim: f64,
    /// The rate a duplicates build's 1× stands for (per start command).
    pub duplicate_unit: f64,
    pub builds: Vec<BuildResult>,
    pub suggestion: Option<Suggestion>,
    /// Every build met its aim.
    pub aims_met: bool,
}

/// One build over all seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildResult {
    pub build: Build,
    pub label: String,
    /// The rate its fault runs at (0 for the sound build).
    pub rate: f64,
    pub runs: u64,
    /// Runs rolled back, frozen or left holding: the sound build's false
    /// rollbacks; for a bad build, the runs it did not promote.
    pub stopped: Proportion,
    pub stopped_by_phase: Vec<PhaseProportion>,
    /// The stopped runs' seeds, in seed order (`posim run SCENARIO --seed N`
    /// replays the sound build's).
    pub stopped_seeds: Vec<u64>,
    /// A bad build rolled back or frozen after its deploy.
    pub detected: Option<Proportion>,
    /// A bad build that reached 100% and stayed.
    pub false_promote: Option<Proportion>,
    /// Runbook time from the bad build's deploy to the rollback decision.
    pub time_to_detect: Option<Spread>,
    /// How long a completed rollout took.
    pub rollout_time: Option<Spread>,
    /// The aim it is held to, in words (none below 2× cap).
    pub aim: Option<String>,
    pub met: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseProportion {
    pub phase: String,
    pub proportion: Proportion,
}

impl BuildResult {
    pub fn of(scenario: &Scenario, build: Build, tally: &BuildTally, target_false_alarm: f64) -> BuildResult {
        let runs = tally.runs;
        let stopped = Proportion::of(tally.stopped(), runs);
        let stopped_by_phase = scenario
            .phases
            .iter()
            .zip(&tally.stopped_by_phase)
            .map(|(phase, count)| PhaseProportion {
                phase: phase.name.clone(),
                proportion: Proportion::of(*count, runs),
            })
            .collect();
        let mut stopped_seeds = tally.stopped_seeds.clone();
        stopped_seeds.sort_unstable();
        let bad = build != Build::Sound;
        let detected = bad.then(|| Proportion::of(tally.detected_after.len() as u64, runs));
        let false_promote = bad.then(|| Proportion::of(tally.promoted, runs));
        let (aim, met) = match build {
            Build::Sound => {
                let aim = format!("false rollbacks ≤ {}", tally::percent(target_false_alarm));
                (Some(aim), stopped.rate <= target_false_alarm)
            }
            Build::Bad { multiple, .. } if multiple >= AIM_MULTIPLE => {
                let aim = format!("false promotes ≤ {}", tally::percent(FALSE_PROMOTE_AIM));
                (Some(aim), false_promote.is_none_or(|p| p.rate <= FALSE_PROMOTE_AIM))
            }
            Build::Bad { .. } => (None, true),
        };
        BuildResult {
            build,
            label: build.label(scenario),
            rate: build.rate(scenario),
            runs,
            stopped,
            stopped_by_phase,
            stopped_seeds,
            detected,
            false_promote,
            time_to_detect: Spread::of(&tally.detected_after),
            rollout_time: Spread::of(&tally.completed_at),
            aim,
            met,
        }
    }
}

/// A calibration that cannot start: said before any run.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("--seeds must be at least 1")]
    NoSeeds,
    #[error("--first + --seeds is past the last seed (2^64 - 1)")]
    SeedsOverflow,
    #[error("--target-false-alarm must be a share above 0 and below 1 (0.001 is 0.1%), got {0}")]
    Target(f64),
    #[error("--builds chose no build")]
    NoBuilds,
    #[error("{0} runs are more than posim calibrate takes at once ({MAX_RUNS})")]
    TooMany(String),
}

/// The most runs one calibration makes (seeds × builds, and the search's).
pub const MAX_RUNS: u64 = 100_000_000;

impl CalibrateConfig {
    /// Checks the numbers a person gave before anything runs.
    pub fn check(&self, builds: usize) -> Result<(), CalibrateError> {
        if self.seeds.count == 0 {
            return Err(CalibrateError::NoSeeds);
        }
        if self.seeds.first.checked_add(self.seeds.count - 1).is_none()
            || self.seeds.first.checked_add(self.candidate_seeds.saturating_sub(1)).is_none()
        {
            return Err(CalibrateError::SeedsOverflow);
        }
        if !(self.target_false_alarm > 0.0 && self.target_false_alarm < 1.0) {
            return Err(CalibrateError::Target(self.target_false_alarm));
        }
        if builds == 0 {
            return Err(CalibrateError::NoBuilds);
        }
        let main = self.seeds.count.checked_mul(builds as u64);
        let search = self.candidate_seeds.checked_mul(suggest::RUNS_PER_CANDIDATE * suggest::CANDIDATES as u64);
        match main.zip(search).and_then(|(main, search)| main.checked_add(search)) {
            Some(total) if total <= MAX_RUNS => Ok(()),
            Some(total) => Err(CalibrateError::TooMany(total.to_string())),
            None => Err(CalibrateError::TooMany("more than 2^64".into())),
        }
    }
}

/// Runs the calibration with progress on stderr.
pub fn calibrate(scenario: &Scenario, config: &CalibrateConfig) -> Result<Calibration, CalibrateError> {
    let family = builds::family(scenario, &config.builds);
    config.check(family.len())?;
    let cases: Vec<Case> = family.iter().map(|build| Case { scenario: build.apply(scenario), build: *build }).collect();
    let candidates = suggest::candidates(scenario);
    let search_runs = config.candidate_seeds.saturating_mul(suggest::RUNS_PER_CANDIDATE * candidates.len() as u64);
    let main_runs = config.seeds.count.saturating_mul(cases.len() as u64);
    let progress = Progress::new("calibrate", Measure::Count("runs"), &[main_runs, search_runs]);
    let tallies = run_cases(&cases, &config.seeds, &|done| progress.set(0, done));
    progress.complete(0);
    let suggestion = (config.candidate_seeds > 0).then(|| {
        let seeds = Seeds { count: config.candidate_seeds, ..config.seeds };
        suggest::search(scenario, &candidates, &seeds, config.target_false_alarm, &|done| progress.set(1, done))
    });
    progress.finish();
    let results: Vec<BuildResult> = family
        .iter()
        .zip(&tallies)
        .map(|(build, tally)| BuildResult::of(scenario, *build, tally, config.target_false_alarm))
        .collect();
    Ok(Calibration {
        schema_version: SCHEMA_VERSION,
        posim_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: scenario.name.clone(),
        first_seed: config.seeds.first,
        seeds: config.seeds.count,
        phases: scenario.phases.iter().map(|phase| phase.name.clone()).collect(),
        target_false_alarm: config.target_false_alarm,
        false_promote_aim: FALSE_PROMOTE_AIM,
        duplicate_unit: DUPLICATE_UNIT,
        aims_met: results.iter().all(|result| result.met),
        builds: results,
        suggestion,
    })
}
