//! A load run, start to end: the live engine's world and launcher, the
//! stack deployed once with the scenario's last phase config, the steps
//! (open or closed), the final audit, the database's own ceiling (pgbench)
//! on the run's database, then the judge's D1–D8 and the load section with
//! its knee, headroom, thresholds and ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::customer::{self, Customers, Turn};
use super::gate::{self, Measured};
use super::knee::{self, Caps, Point};
use super::limit;
use super::merge::StepRecord;
use super::meter::Meter;
use super::pgbench::{self, Ceiling};
use super::shape::{Model, Shape};
use crate::live::engine::{self, LiveError, LiveOptions};
use crate::report::load::{KneeReport, LoadSection, StepReport, StoppedBy};
use crate::scenario::Scenario;
use crate::scenario::load::Threshold;
use crate::verdict::Recorded;

/// What a load run produced: the engine's record and the load's numbers.
pub struct LoadOutcome {
    pub recorded: Recorded,
    pub section: LoadSection,
    /// Each step's raw numbers, for `load-steps.json` (what `posim merge` reads).
    pub steps: Vec<StepRecord>,
    pub trace_written: bool,
}

/// The scenario a load run deploys: its last phase only (no rollout).
pub fn load_scenario(scenario: &Scenario) -> Scenario {
    let mut load = scenario.clone();
    load.phases = scenario.phases.last().cloned().into_iter().collect();
    load.operator.clear();
    load
}

/// Runs the load on `scenario` (already made by [`load_scenario`]);
/// `pgbench`: `None` skips the database's ceiling.
pub async fn run(
    scenario: &Scenario,
    options: LiveOptions,
    shape: Shape,
    thresholds: &[Threshold],
    pgbench: Option<pgbench::Asked>,
) -> Result<LoadOutcome, LiveError> {
    let meter = Arc::new(Meter::default());
    let observer: Arc<dyn crate::live::shared::Observe> = meter.clone();
    let started = engine::start(scenario, options.clone(), Some(observer)).await?;
    let shared = Arc::clone(&started.shared);
    if let Err(error) = engine::first_deploy(&shared).await {
        engine::finish(started).await;
        return Err(error);
    }
    let (customers, note) = Customers::new(Arc::clone(&shared), Arc::clone(&meter), options.seed, shape.shard);
    let customers = Arc::new(customers);
    let began = Instant::now();
    let steps = steps(&customers, shape, scenario).await;
    let seconds = began.elapsed().as_secs_f64();
    meter.close();
    settle(&shared).await;
    shared.final_audit().await;
    let ceiling = database_ceiling(&shared, pgbench).await;
    drop(customers);
    drop(shared);
    let records = steps.iter().map(|s| StepRecord::of(s, &meter.counts(s.step))).collect();
    let purchases: u64 = steps.iter().map(|s| s.started).sum();
    let mut finished = engine::finish(started).await;
    finished.notes.extend(note);
    let mut section = section(scenario, shape, steps, thresholds);
    section.set_ceiling(ceiling);
    let engine = format!("load ({} model), stack as {}, {seconds:.0} s", shape.model_name(), finished.launcher);
    let recorded = Recorded {
        history: finished.history,
        stack_requests: finished.stack_requests,
        simulated: (seconds * 1000.0) as u64,
        purchases,
        engine,
        notes: finished.notes,
        index: None,
        harness: Some(finished.harness),
    };
    Ok(LoadOutcome { recorded, section, steps: records, trace_written: finished.trace_written })
}

/// Plays the steps; with `find_knee`, stops at the first step past the knee.
async fn steps(customers: &Arc<Customers>, shape: Shape, scenario: &Scenario) -> Vec<StepReport> {
    let caps = caps(scenario);
    let mut reports = Vec::new();
    let bound = customer::purchase_bound(&customers.shared);
    let mut goose = match shape.model {
        Model::Closed { .. } => Some(super::closed::Users::start(customers, shape)),
        Model::Open { .. } => None,
    };
    for index in 0..shape.steps {
        let step = index as usize;
        let target = shape.target(index);
        customers.meter.begin_step(step);
        let began = Instant::now();
        let cpu_began = super::cpu::CpuMark::now();
        let (tasks, spent) = match &mut goose {
            None => super::open::step(customers, step, target, shape.step).await,
            Some(users) => (users.hold(shape.step).await, false),
        };
        let seconds = began.elapsed().as_secs_f64();
        customers.meter.drain();
        wait(tasks, bound).await;
        let mut report = customers.meter.report(step, target, seconds);
        report.cpu = cpu_began.zip(super::cpu::CpuMark::now()).map(|(began, ended)| began.until(&ended));
        eprintln!("{}", LoadSection::step_line(&report));
        reports.push(report);
        let points: Vec<Point> = reports.iter().map(point).collect();
        if spent {
            eprintln!("posim load: the plan has no customer left: the load ends after step {index}");
        }
        if spent || (shape.find_knee && knee::knee(&points, caps).next.is_some()) {
            break;
        }
        if let Some(users) = &mut goose {
            users.more(shape.target(index + 1));
        }
    }
    if let Some(users) = goose {
        users.stop().await;
    }
    reports
}

/// The database's own ceiling, on the run's database while it still runs:
/// why there is none (skipped, or pgbench failed) is a note, not an error.
async fn database_ceiling(
    shared: &crate::live::shared::Shared,
    asked: Option<pgbench::Asked>,
) -> Result<Ceiling, String> {
    let asked = asked.ok_or("skipped (--no-pgbench)")?;
    let url = shared.host_database_url().await.map_err(|why| format!("skipped: {why}"))?;
    let clients = asked.clients(shared.scenario.stack.replicas);
    let seconds = asked.duration.as_secs();
    eprintln!("pgbench: {clients} clients for {seconds} s on the run's database (schema {}) …", pgbench::SCHEMA);
    pgbench::ceiling(&url, clients, asked.duration).await.map_err(|error| format!("pgbench failed: {error}"))
}

/// At most this many sweeps drain a load's backlog (each handles at most
/// the stack's batch: 500 for the reference stack).
const SETTLE_SWEEPS_MAX: u32 = 200;

/// Lets payments left authorized (declined cards, refused confirms) pass
/// the cycle TTL, then sweeps until a sweep finds nothing, as the
/// runbook's drain does.
async fn settle(shared: &crate::live::shared::Shared) {
    let ttl = shared.scenario.stack.settings.cycle_ttl.max(1000);
    tokio::time::sleep(Duration::from_millis(ttl + 500)).await;
    for _ in 0..SETTLE_SWEEPS_MAX {
        if engine::sweep(shared).await == 0 {
            break;
        }
    }
}

/// Waits for a step's purchases in flight (each bounded by its own timeouts).
async fn wait(mut tasks: JoinSet<Turn>, bound: Duration) {
    let _ = tokio::time::timeout(bound, async { while tasks.join_next().await.is_some() {} }).await;
}

fn caps(scenario: &Scenario) -> Caps {
    Caps { p99_ms: scenario.load.p99_max as f64, error_rate: scenario.load.error_rate_max }
}

fn point(step: &StepReport) -> Point {
    let p99_ms = step.latency.get("all").map_or(0.0, |p| p.p99_ms);
    Point { throughput: step.throughput, p99_ms, error_rate: step.error_rate }
}

/// The load section: knee, headroom and thresholds from the steps.
pub fn section(scenario: &Scenario, shape: Shape, steps: Vec<StepReport>, thresholds: &[Threshold]) -> LoadSection {
    let mut all: Vec<Threshold> = scenario.load.thresholds.clone();
    all.extend_from_slice(thresholds);
    let shard = (!shape.shard.is_whole()).then(|| shape.shard.to_string());
    let head =
        Head { model: shape.model_name().into(), caps: caps(scenario), peak_rate: knee::peak_rate(scenario), shard };
    summarize(head, steps, &all)
}

/// What a load section says beyond its steps.
pub struct Head {
    pub model: String,
    pub caps: Caps,
    pub peak_rate: f64,
    pub shard: Option<String>,
}

/// The load section of `steps` (one run's, or shards' merged).
pub fn summarize(head: Head, mut steps: Vec<StepReport>, thresholds: &[Threshold]) -> LoadSection {
    let Head { model, caps, peak_rate, shard } = head;
    let points: Vec<Point> = steps.iter().map(point).collect();
    classify_steps(&mut steps, &points, caps);
    let found = knee::knee(&points, caps);
    let crossed = found.next.map(|next| steps[next].limited_by);
    // The knee is the stack's only if the stack (or its database) limited the step past it.
    let stopped_by = match (found.next, crossed) {
        (Some(step), Some(limit)) if !limit.is_the_stacks() => Some(StoppedBy {
            step,
            limit,
            reason: found.reason.clone(),
            suggestion: limit.suggestion().unwrap_or_default().to_string(),
        }),
        _ => None,
    };
    let knee = found.knee.filter(|_| stopped_by.is_none()).map(|index| KneeReport {
        step: index,
        throughput: points[index].throughput,
        p99_ms: points[index].p99_ms,
        next_step: found.next,
        reason: found.reason.clone(),
        limited_by: crossed.unwrap_or_default(),
    });
    let headroom = knee.as_ref().and_then(|k| knee::headroom(k.throughput, peak_rate));
    let purchases: u64 = steps.iter().map(|s| s.succeeded + s.failed).sum();
    let failed: u64 = steps.iter().map(|s| s.failed).sum();
    let not_started: u64 = steps.iter().map(|s| s.not_started).sum();
    let offered = purchases + not_started;
    let error_rate = if offered > 0 { (failed + not_started) as f64 / offered as f64 } else { 0.0 };
    // Judged where the knee is: a knee search always ends on a step past it.
    let p99_ms = knee.as_ref().map(|k| k.p99_ms).or_else(|| points.last().map(|p| p.p99_ms)).unwrap_or(0.0);
    let gated_error_rate = found.knee.map_or(error_rate, |index| points[index].error_rate);
    let thresholds = gate::judge(thresholds, Measured { p99_ms, error_rate: gated_error_rate, headroom });
    LoadSection {
        model,
        shard,
        caps: format!("p99 ≤ {} ms, failures ≤ {:.2}%", caps.p99_ms, 100.0 * caps.error_rate),
        p99_max_ms: caps.p99_ms,
        error_rate_max: caps.error_rate,
        steps,
        knee,
        peak_rate,
        headroom,
        purchases,
        failed,
        not_started,
        error_rate,
        thresholds,
        stopped_by,
        ..LoadSection::default()
    }
}

/// Sets what limited each step: nothing while it stays within the caps, or
/// the rule of [`crate::load::limit`] for the step that crossed them.
fn classify_steps(steps: &mut [StepReport], points: &[Point], caps: Caps) {
    for index in 0..steps.len() {
        let found = knee::knee(&points[..=index], caps);
        let past = found.next == Some(index);
        let best_p99 = found.knee.map(|best| points[best].p99_ms);
        steps[index].limited_by = limit::classify(&steps[index].figures(), caps, past, best_p99);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::limit::Limit;

    fn step(index: usize, throughput: f64, p99_ms: f64, error_rate: f64) -> StepReport {
        let all = crate::report::load::Percentiles { count: 10, p99_ms, ..Default::default() };
        let latency = [("all".to_string(), all)].into_iter().collect();
        let failed = (error_rate * 1000.0) as u64;
        StepReport {
            step: index,
            throughput,
            error_rate,
            latency,
            succeeded: 1000 - failed,
            failed,
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_are_judged_at_the_knee_not_on_the_step_past_it() {
        let head = || Head {
            model: "open".into(),
            caps: Caps { p99_ms: 300.0, error_rate: 0.01 },
            peak_rate: 10.0,
            shard: None,
        };
        let gates: Vec<Threshold> =
            ["error_rate<1%", "p99<200ms", "knee>5x"].iter().map(|t| t.parse().expect("a gate")).collect();
        let steps = vec![step(0, 50.0, 20.0, 0.0), step(1, 100.0, 150.0, 0.002), step(2, 90.0, 900.0, 0.2)];
        let section = summarize(head(), steps, &gates);
        assert_eq!(section.knee.as_ref().map(|k| k.step), Some(1));
        let met: Vec<(String, bool)> = section.thresholds.iter().map(|t| (t.actual.clone(), t.met)).collect();
        assert_eq!(met, vec![("0.20%".into(), true), ("150.0ms".into(), true), ("10.0x".into(), true)]);
        let none = summarize(head(), vec![step(0, 50.0, 900.0, 0.3)], &gates);
        assert!(none.knee.is_none());
        assert!(none.thresholds.iter().all(|t| !t.met), "no knee: judged on the run, and no headroom");
    }

    /// A step past the caps only through purchases never started (no free
    /// machine): the fleet ran out, not the stack: no knee is the stack's.
    #[test]
    fn a_load_stopped_by_the_fleet_names_it_and_reports_no_stack_knee() {
        let head =
            Head { model: "open".into(), caps: Caps { p99_ms: 300.0, error_rate: 0.01 }, peak_rate: 10.0, shard: None };
        let turned_away = StepReport { not_started: 40, error_rate: 40.0 / 1040.0, ..step(1, 120.0, 12.0, 0.0) };
        let section = summarize(head, vec![step(0, 100.0, 10.0, 0.0), turned_away], &[]);
        assert!(section.knee.is_none(), "no stack knee: {:?}", section.knee);
        let stopped = section.stopped_by.clone().expect("the limit is named");
        assert_eq!((stopped.step, stopped.limit), (1, Limit::Fleet));
        assert!(stopped.suggestion.contains("bigger fleet"), "{}", stopped.suggestion);
        assert_eq!(section.steps[0].limited_by, Limit::WithinCaps);
        assert!(section.markdown().contains("limited by the fleet"), "{}", section.markdown());
    }

    #[test]
    fn a_knee_past_which_the_stack_failed_is_the_stacks() {
        let head =
            Head { model: "open".into(), caps: Caps { p99_ms: 300.0, error_rate: 0.01 }, peak_rate: 10.0, shard: None };
        let section = summarize(head, vec![step(0, 100.0, 10.0, 0.0), step(1, 120.0, 900.0, 0.0)], &[]);
        let knee = section.knee.expect("a knee");
        assert_eq!((knee.step, knee.limited_by), (0, Limit::StackLatency));
        assert!(section.stopped_by.is_none());
    }
}
