//! Members run live (`posim live`, one scenario or a suite): each against a
//! stack of its own — its replicas, its throwaway PostgreSQL, its world on a
//! port the OS picks, its entry in the run registry, its report folder — so
//! members in parallel share nothing; judged and written as a simulated
//! member is.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Member, Ran, Runner, SuiteConfig, Unwritten};
use crate::live::engine::{self, LiveError, LiveOptions, LiveOutcome};
use crate::live::launcher::StackChoice;
use crate::live::runs::{RUNS_DIR_VAR, Run};
use crate::progress::Measure;
use crate::report;
use crate::scenario::Scenario;
use crate::time::Millis;
use crate::verdict::{Recorded, judge};

pub use crate::scenario::live::TIME_SCALES;

/// The time scale of a scenario with no `[live] time_scale`, when `--time-scale` is not given.
pub const DEFAULT_TIME_SCALE: f64 = 60.0;

/// How every member is run live.
pub struct Live<'a> {
    pub config: &'a SuiteConfig,
    /// `--time-scale`: overrides each scenario's `[live] time_scale`.
    pub time_scale: Option<f64>,
    pub stack: StackChoice,
    /// Where the world listens (0: a port the OS picks, each member its own).
    pub world_port: u16,
    /// Print each run's header and notes (a single run; a suite's header says enough).
    pub announce: bool,
    /// A game day's console (`posim gameday`); none for the gate.
    pub desk: Option<crate::live::desk::DeskOptions>,
}

/// Why a live member could not be run or judged: the harness failed (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum LiveFailed {
    #[error("cannot register the run (set {RUNS_DIR_VAR} to a writable folder): {0}")]
    Register(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{file}: the harness could not run: {source}")]
    Harness { file: String, source: LiveError },
    #[error(
        "interrupted: the stack and its database were stopped; {} holds the trace so far and a partial summary",
        .dir.display()
    )]
    Interrupted { dir: PathBuf },
    #[error(transparent)]
    Unwritten(#[from] Unwritten),
}

impl Live<'_> {
    /// The member's time scale: `--time-scale`, else its own, else 60.
    pub fn time_scale(&self, scenario: &Scenario) -> f64 {
        self.time_scale.or(scenario.live.time_scale).unwrap_or(DEFAULT_TIME_SCALE)
    }

    fn options(
        &self,
        scenario: &Scenario,
        dir: &std::path::Path,
        run: &Arc<Run>,
        reached: &Arc<AtomicU64>,
    ) -> LiveOptions {
        LiveOptions {
            seed: self.config.seed.unwrap_or(scenario.seed),
            time_scale: self.time_scale(scenario),
            stack: self.stack.clone(),
            logs: dir.join("stack-logs"),
            report_dir: dir.to_path_buf(),
            trace: self.config.trace,
            world_port: self.world_port,
            run: Arc::clone(run),
            namespace: None,
            reached: Arc::clone(reached),
            desk: self.desk.clone(),
        }
    }
}

impl Runner for Live<'_> {
    type Error = LiveFailed;
    const MEASURE: Measure = Measure::Time("runbook time");

    fn run(&self, member: &Member, dir: PathBuf, progress: &dyn Fn(Millis)) -> Result<Ran, LiveFailed> {
        let started = Instant::now();
        let scenario = &member.scenario;
        let mut notes = simulator_only_faults(scenario);
        if self.announce {
            println!("{}", header(scenario, self.config.seed.unwrap_or(scenario.seed), self.time_scale(scenario)));
            notes.iter().for_each(|note| println!("note: {note}"));
        }
        let run = Run::register().map_err(LiveFailed::Register)?;
        let reached = Arc::new(AtomicU64::new(0));
        let options = self.options(scenario, &dir, &run, &reached);
        let (seed, time_scale) = (options.seed, options.time_scale);
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(LiveFailed::Runtime)?;
        // The engine runs on the runtime's workers; progress is read here.
        let work = async {
            let mut live = std::pin::pin!(engine::run(scenario, options));
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    outcome = &mut live => return outcome,
                    _ = tick.tick() => progress(reached.load(Ordering::Relaxed)),
                }
            }
        };
        let outcome = crate::live::interrupt::until_stopped(runtime, &run, "posim live", work)
            .ok_or_else(|| LiveFailed::Interrupted { dir: dir.clone() })?
            .map_err(|source| LiveFailed::Harness { file: member.file.display().to_string(), source })?;
        let LiveOutcome {
            history,
            stack_requests,
            simulated,
            purchases,
            notes: engine_notes,
            launcher,
            trace_written,
            harness,
        } = outcome;
        notes.extend(engine_notes);
        let engine = format!("live, stack as {launcher}, time scale {time_scale}×");
        let harness = Some(harness);
        let recorded = Recorded { history, stack_requests, simulated, purchases, engine, notes, index: None, harness };
        let judged = judge(scenario, seed, &self.config.bugs, recorded);
        // A streamed trace already holds every record.
        report::write(&dir, &judged.report, &judged.history, self.config.trace && !trace_written)
            .map_err(|source| Unwritten { dir: dir.clone(), source })?;
        Ok(Ran { report: judged.report, dir, wall_seconds: started.elapsed().as_secs_f64() })
    }

    /// Wall time: the runbook time over the member's time scale.
    fn expected_length(&self, member: &Member) -> f64 {
        let scenario = &member.scenario;
        scenario.end() as f64 / self.time_scale(scenario)
    }
}

/// The members a live suite runs: those without `[live] skip` (each one
/// left out is said on stdout, with its reason).
pub fn runnable(members: Vec<Member>) -> Vec<Member> {
    let (skipped, runnable): (Vec<Member>, Vec<Member>) =
        members.into_iter().partition(|member| member.scenario.live.skip.is_some());
    for member in &skipped {
        println!("skipped: {} ({})", member.file_name(), member.scenario.live.skip.as_deref().unwrap_or_default());
    }
    runnable
}

/// `posim live · scenario rollout · seed 1 · time scale 60× · about 405 s of wall time`.
fn header(scenario: &Scenario, seed: u64, time_scale: f64) -> String {
    let wall = scenario.end() as f64 / 1000.0 / time_scale;
    format!(
        "posim live · scenario {} · seed {seed} · time scale {time_scale}× · about {wall:.0} s of wall time",
        scenario.name
    )
}

/// The scenario's faults that live inside a replica (between two of its
/// effects, or its clock): a live run cannot reach there, so it says so.
fn simulator_only_faults(scenario: &Scenario) -> Vec<String> {
    let inside: Vec<&'static str> = scenario
        .faults
        .iter()
        .map(|fault| fault.kind)
        .filter(|kind| kind.between_effects())
        .map(<&'static str>::from)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut notes = Vec::new();
    if !inside.is_empty() {
        notes.push(format!(
            "{} faults (inside a replica, between two of its effects) are played by the simulator only: \
             posim live pauses and kills replicas and stops the database at planned times with [[stack_faults]]",
            inside.join(", ")
        ));
    }
    let per_endpoint = |phase: &&crate::scenario::phases::Phase| phase.bad_build != Default::default();
    let phases: Vec<&str> = scenario.phases.iter().filter(per_endpoint).map(|phase| phase.name.as_str()).collect();
    if !phases.is_empty() {
        notes.push(format!(
            "the bad builds of phase(s) {} (bad_build_confirm_failure_rate, bad_build_execute_failure_rate, \
             bad_build_duplicate_rate) are played by the simulator only (posim calibrate); bad_build_error_rate is played live",
            phases.join(", ")
        ));
    }
    notes
}
