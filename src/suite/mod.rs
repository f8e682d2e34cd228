//! Suites: several scenarios as one gate, simulated ([`Simulated`]) or live
//! ([`live::Live`]). Each member runs as `posim run` or `posim live` would
//! run it alone (same seed rule, same report folder contents), up to `jobs`
//! at once on [`crate::pool`]'s
//! threads; the results are kept in input order whatever order they finish
//! in (the longest are started first), with their [`RunReport`]s in memory
//! for the suite's own summaries.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::progress::{Measure, Progress};
use crate::report::{self, RunReport};
use crate::stack::StackBug;
use crate::time::Millis;
use crate::verdict::simulate_observed;

pub mod inputs;
pub mod live;
pub mod summary;

pub use inputs::Member;

/// The most scenarios a suite runs at once (`--jobs`).
pub const MAX_JOBS: u16 = 64;

/// What every member of a suite is run with.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// The seed of every member; `None`: each scenario's own.
    pub seed: Option<u64>,
    pub bugs: Vec<StackBug>,
    /// Write each member's `trace.jsonl`.
    pub trace: bool,
    pub jobs: usize,
    /// The suite's folder: a report folder per member, and the suite's summaries.
    pub dir: PathBuf,
    /// `posim run` or `posim live`, as the console names the suite.
    pub command: &'static str,
}

impl SuiteConfig {
    /// The threads that run: `jobs`, but no more than there are members.
    pub fn threads(&self, members: usize) -> usize {
        self.jobs.clamp(1, members.max(1))
    }
}

/// One member's run: its report (kept for the suite's summaries and JUnit),
/// where it was written, and how long it took.
pub struct Ran {
    pub report: RunReport,
    pub dir: PathBuf,
    pub wall_seconds: f64,
}

/// A whole suite's run, in input order.
pub struct SuiteRun {
    pub labels: Vec<String>,
    pub files: Vec<PathBuf>,
    pub runs: Vec<Ran>,
    pub threads: usize,
    pub wall_seconds: f64,
}

impl SuiteRun {
    pub fn passed(&self) -> bool {
        self.runs.iter().all(|ran| ran.report.passed())
    }

    /// One verdict for all: a failure fails; else a run posim could not judge.
    pub fn verdict(&self) -> crate::report::Verdict {
        crate::report::Verdict::of_all(self.runs.iter().map(|ran| ran.report.verdict))
    }

    /// Each member's label and report, in input order (what a JUnit writer takes).
    pub fn labelled(&self) -> Vec<(&str, &RunReport)> {
        self.labels.iter().map(String::as_str).zip(self.runs.iter().map(|ran| &ran.report)).collect()
    }
}

/// A member's report folder could not be written: the harness failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the report to {}: {source}", .dir.display())]
pub struct Unwritten {
    pub dir: PathBuf,
    pub source: std::io::Error,
}

/// How one member is run (simulated or live): given the member, its report
/// folder and its progress, it returns what it ran or why the harness failed.
pub trait Runner: Sync {
    type Error: Send;
    /// What a member's progress counts in (runbook or simulated time).
    const MEASURE: Measure;
    fn run(&self, member: &Member, dir: PathBuf, progress: &dyn Fn(Millis)) -> Result<Ran, Self::Error>;

    /// How long the member is expected to take, in any unit common to all
    /// members: the longest start first, so parallel members end together.
    fn expected_length(&self, member: &Member) -> f64 {
        member.scenario.end() as f64
    }
}

/// The members' indices, the longest expected first (input order among equals).
fn longest_first<R: Runner>(members: &[Member], runner: &R) -> Vec<usize> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|a, b| runner.expected_length(&members[*b]).total_cmp(&runner.expected_length(&members[*a])));
    order
}

/// Runs the members with `runner`, up to `config.jobs` at once, with one
/// progress over all of them on stderr, and a line on stdout as each one
/// ends (`[3/9] rollout.toml PASS 2.1 s`). Stops starting members
/// after one whose harness failed, and returns its error.
pub fn run<R: Runner>(members: &[Member], config: &SuiteConfig, runner: &R) -> Result<SuiteRun, R::Error> {
    let started = Instant::now();
    let threads = config.threads(members.len());
    let lengths: Vec<Millis> = members.iter().map(|member| member.scenario.end()).collect();
    let progress = Progress::new(&format!("{} suite", config.command), R::MEASURE, &lengths);
    let mut slots: Vec<Option<Ran>> = members.iter().map(|_| None).collect();
    let mut failure = None;
    let mut done = 0;
    let count = u64::try_from(members.len()).unwrap_or(u64::MAX);
    let order = longest_first(members, runner);
    let member_run = |job: u64| {
        let index = usize::try_from(job).ok().and_then(|job| order.get(job).copied()).unwrap_or(usize::MAX);
        let ran = members.get(index).map(|member| {
            let ran = runner.run(member, member_dir(&config.dir, member), &|at| progress.set(index, at));
            progress.complete(index);
            ran
        });
        (index, ran)
    };
    crate::pool::run(count, threads, member_run, |(index, result)| match result {
        Some(Ok(ran)) => {
            done += 1;
            progress.note(format!("{done} of {} scenarios done", members.len()));
            progress.println(&summary::progress_line(done, members.len(), &members[index], &ran));
            slots[index] = Some(ran);
            true
        }
        Some(Err(error)) => {
            failure.get_or_insert(error);
            false
        }
        None => false,
    });
    progress.finish();
    if let Some(error) = failure {
        return Err(error);
    }
    let runs: Vec<Ran> = slots.into_iter().flatten().collect();
    let labels = members.iter().map(|member| member.label.clone()).collect();
    let files = members.iter().map(|member| member.file.clone()).collect();
    Ok(SuiteRun { labels, files, runs, threads, wall_seconds: started.elapsed().as_secs_f64() })
}

/// Members simulated as `posim run` would simulate each alone.
pub struct Simulated<'a> {
    pub config: &'a SuiteConfig,
}

impl Runner for Simulated<'_> {
    type Error = Unwritten;
    const MEASURE: Measure = Measure::Time("simulated time");

    /// Simulates one member and writes its report folder (the history is
    /// dropped once written).
    fn run(&self, member: &Member, dir: PathBuf, progress: &dyn Fn(Millis)) -> Result<Ran, Unwritten> {
        let started = Instant::now();
        let config = self.config;
        let seed = config.seed.unwrap_or(member.scenario.seed);
        let judged = simulate_observed(&member.scenario, seed, &config.bugs, &mut |at| progress(at));
        report::write(&dir, &judged.report, &judged.history, config.trace)
            .map_err(|source| Unwritten { dir: dir.clone(), source })?;
        Ok(Ran { report: judged.report, dir, wall_seconds: started.elapsed().as_secs_f64() })
    }
}

/// `DIR/<stem>`: a member's report folder.
pub fn member_dir(suite_dir: &Path, member: &Member) -> PathBuf {
    suite_dir.join(&member.label)
}
