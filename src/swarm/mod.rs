//! Swarm testing: one scenario over many seeds on several threads, each
//! seed with its own fault mix (see [`edits::draw_mix`]); every failing seed
//! leaves a self-contained [`artifact`] that `posim replay` plays again
//! exactly and `posim shrink` makes smaller ([`shrink`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::scenario::Scenario;
use crate::stack::StackBug;
use crate::verdict::simulate;

pub mod artifact;
pub mod edits;
pub mod shrink;

use crate::progress::{Measure, Progress};
use artifact::{Artifact, ArtifactError, RunResult, ScenarioSource};
use edits::{EditError, Edits};

/// Seeds listed per failure group in the summary.
const LISTED_SEEDS: usize = 10;

/// What a swarm runs.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    pub first: u64,
    pub seeds: u64,
    pub jobs: usize,
    pub bugs: Vec<StackBug>,
    /// A fault mix per seed; off: the scenario's faults as written.
    pub mix: bool,
}

impl SwarmConfig {
    /// The threads that run: `jobs`, but no more than there are seeds.
    pub fn threads(&self) -> usize {
        self.jobs.clamp(1, usize::try_from(self.seeds).unwrap_or(usize::MAX).max(1))
    }
}

/// One seed's run.
#[derive(Clone, Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub edits: Edits,
    pub result: RunResult,
}

/// The edits a swarm makes for `seed`: its fault mix, or none.
pub fn seed_edits(scenario: &Scenario, seed: u64, mix: bool) -> Edits {
    Edits { faults: mix.then(|| edits::draw_mix(scenario, seed)), ..Edits::default() }
}

/// Plays `scenario` as `edits` change it: the one run of swarm, replay and shrink.
pub fn run(scenario: &Scenario, edits: &Edits, seed: u64, bugs: &[StackBug]) -> Result<RunResult, EditError> {
    let edited = edits.apply(scenario)?;
    let judged = simulate(&edited, seed, bugs);
    Ok(RunResult::of(&edited, &judged.report, &judged.history))
}

/// Runs the seeds on `config.jobs` threads; `done` sees each seed's run on
/// the calling thread as it finishes (in finishing order, not seed order).
pub fn run_seeds(scenario: &Scenario, config: &SwarmConfig, done: &mut dyn FnMut(SeedRun)) -> Result<(), EditError> {
    let mut failure = None;
    let seed_run = |index| {
        let seed = config.first + index;
        let edits = seed_edits(scenario, seed, config.mix);
        run(scenario, &edits, seed, &config.bugs).map(|result| SeedRun { seed, edits, result })
    };
    crate::pool::run(config.seeds, config.threads(), seed_run, |message| match message {
        Ok(run) => {
            done(run);
            true
        }
        Err(error) => {
            // No seed is taken after the first error.
            failure.get_or_insert(error);
            false
        }
    });
    failure.map_or(Ok(()), Err)
}

/// What a swarm leaves: the tally, and the first artifact it could not write
/// (it stops writing then, but runs every seed).
pub struct Swarmed {
    pub tally: Tally,
    pub unwritten: Option<ArtifactError>,
}

/// Runs the seeds with progress shown, and writes an artifact for every
/// failing seed into `dir` (`seed-N.json`).
pub fn run_and_record(
    scenario: &Scenario,
    source: &ScenarioSource,
    config: &SwarmConfig,
    dir: &Path,
) -> Result<Swarmed, EditError> {
    let progress = Progress::new("swarm", Measure::Count("seeds"), &[config.seeds]);
    let mut swarmed = Swarmed { tally: Tally::default(), unwritten: None };
    let ran = run_seeds(scenario, config, &mut |run| {
        swarmed.tally.add(&run);
        progress.note(format!("{} failed", swarmed.tally.failed.len()));
        progress.set(0, swarmed.tally.seeds_run);
        if run.result.failed() && swarmed.unwritten.is_none() {
            let path = dir.join(format!("seed-{}.json", run.seed));
            let codes = run.result.codes_line();
            let artifact = Artifact::new(&scenario.name, source, run.seed, &config.bugs, (run.edits, run.result));
            swarmed.unwritten = artifact.write(&path).err();
            progress.println(&format!("seed {}: fail {codes} → {}", run.seed, path.display()));
        }
    });
    progress.finish();
    ran.map(|()| swarmed)
}

/// Failing seeds by what they failed on (a seed may be in several groups).
#[derive(Debug, Default)]
pub struct Tally {
    pub seeds_run: u64,
    pub failed: Vec<u64>,
    pub groups: BTreeMap<String, Vec<u64>>,
}

impl Tally {
    pub fn add(&mut self, run: &SeedRun) {
        self.seeds_run += 1;
        if !run.result.failed() {
            return;
        }
        self.failed.push(run.seed);
        for group in run.result.failure_groups() {
            self.groups.entry(group).or_default().push(run.seed);
        }
    }

    /// The summary: seeds, speed, and the failing seeds by group (seed order).
    pub fn summary(&self, seconds: f64, jobs: usize) -> String {
        let rate = self.seeds_run as f64 / seconds.max(1e-9);
        let mut text = format!(
            "{} seeds in {seconds:.1} s = {rate:.2} seeds/s on {jobs} threads; {} failed\n",
            self.seeds_run,
            self.failed.len()
        );
        for (group, seeds) in &self.groups {
            let mut seeds = seeds.clone();
            seeds.sort_unstable();
            let listed: Vec<String> = seeds.iter().take(LISTED_SEEDS).map(u64::to_string).collect();
            let more = seeds.len().saturating_sub(LISTED_SEEDS);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            let plural = if seeds.len() == 1 { "" } else { "s" };
            text += &format!("  {group} ({} seed{plural}): {}{more}\n", seeds.len(), listed.join(", "));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn threads_run_every_seed_once_with_the_same_results() {
        let scenario = Scenario::load(Path::new("scenarios/terminal-faults.toml")).expect("bundled");
        let config =
            |jobs| SwarmConfig { first: 5, seeds: 4, jobs, bugs: vec![StackBug::NonidempotentConfirm], mix: true };
        let collect = |jobs| {
            let mut runs = BTreeMap::new();
            run_seeds(&scenario, &config(jobs), &mut |run| {
                assert!(runs.insert(run.seed, run.result.trace_hash).is_none(), "a seed runs once");
            })
            .expect("the mix fits");
            runs
        };
        let one = collect(1);
        assert_eq!(one.keys().copied().collect::<Vec<_>>(), [5, 6, 7, 8]);
        assert_eq!(one, collect(3), "threads change nothing but the speed");
    }
}
