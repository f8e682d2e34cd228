//! Suites: several scenarios simulated as one gate. Each member runs as
//! `posim run` would run it alone (same seed rule, same report folder
//! contents, the same trace), up to `jobs` at once on [`crate::pool`]'s
//! threads; the results are kept in input order whatever order they finish
//! in, with their [`RunReport`]s in memory for the suite's own summaries.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::report::{self, RunReport};
use crate::stack::StackBug;
use crate::verdict::simulate;

pub mod inputs;
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

/// Runs the members; `finished` gets a console line as each one ends
/// (`[3/9] rollout.toml PASS 2.1 s`). Stops starting members after a report
/// folder that could not be written.
pub fn run(members: &[Member], config: &SuiteConfig, finished: &mut dyn FnMut(&str)) -> Result<SuiteRun, Unwritten> {
    let started = Instant::now();
    let threads = config.threads(members.len());
    let mut slots: Vec<Option<Ran>> = members.iter().map(|_| None).collect();
    let mut failure = None;
    let mut done = 0;
    let count = u64::try_from(members.len()).unwrap_or(u64::MAX);
    let member_run = |index: u64| {
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        (index, members.get(index).map(|member| run_member(member, config)))
    };
    crate::pool::run(count, threads, member_run, |(index, result)| match result {
        Some(Ok(ran)) => {
            done += 1;
            finished(&summary::progress_line(done, members.len(), &members[index], &ran));
            slots[index] = Some(ran);
            true
        }
        Some(Err(error)) => {
            failure.get_or_insert(error);
            false
        }
        None => false,
    });
    if let Some(error) = failure {
        return Err(error);
    }
    let runs: Vec<Ran> = slots.into_iter().flatten().collect();
    let labels = members.iter().map(|member| member.label.clone()).collect();
    let files = members.iter().map(|member| member.file.clone()).collect();
    Ok(SuiteRun { labels, files, runs, threads, wall_seconds: started.elapsed().as_secs_f64() })
}

/// Simulates one member as `posim run` would alone, and writes its report
/// folder (the history is dropped once written).
fn run_member(member: &Member, config: &SuiteConfig) -> Result<Ran, Unwritten> {
    let started = Instant::now();
    let seed = config.seed.unwrap_or(member.scenario.seed);
    let judged = simulate(&member.scenario, seed, &config.bugs);
    let dir = member_dir(&config.dir, member);
    report::write(&dir, &judged.report, &judged.history, config.trace)
        .map_err(|source| Unwritten { dir: dir.clone(), source })?;
    Ok(Ran { report: judged.report, dir, wall_seconds: started.elapsed().as_secs_f64() })
}

/// `DIR/<stem>`: a member's report folder.
pub fn member_dir(suite_dir: &Path, member: &Member) -> PathBuf {
    suite_dir.join(&member.label)
}
