//! `posim live`: the scenario against a real stack over HTTP, in runbook
//! time compressed by the time scale. posim serves the PSP and the gateway,
//! plays the terminals as tokio tasks on the seeded plan, redeploys the
//! stack at every decision, and records the same history the simulator
//! does — so the same checkers, KPIs, controller and report apply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::clock::{Clock, Recorder};
use super::journal::{self, PartialSummary, TraceSink};
use super::launcher::{LaunchError, Launcher, StackChoice};
use super::runs::Run;
use super::shared::{Shared, Slot, now_in};
use super::world::{self, LiveContext, World};
use crate::contract::bodies::Health;
use crate::contract::{Endpoint, Reply, Request, StackSettings};
use crate::faults::FaultPlan;
use crate::history::{Event, History};
use crate::operator::Operator;
use crate::rollout::controller::{Command, Controller};
use crate::scenario::Scenario;
use crate::seed::{self, KeyedRoll};
use crate::time::Millis;
use crate::traffic::TrafficPlan;

/// What `posim live` is asked for beyond the scenario.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub seed: u64,
    pub time_scale: f64,
    pub stack: StackChoice,
    pub logs: std::path::PathBuf,
    /// The report's folder: the trace (unless `trace` is off) and a partial
    /// summary are written there as the run goes.
    pub report_dir: std::path::PathBuf,
    pub trace: bool,
    /// Where posim's PSP and gateway listen (0: a free port); a stack given
    /// by URL must have been started pointing at it.
    pub world_port: u16,
    /// The run's record in the registry: what it starts is written there.
    pub run: Arc<Run>,
    /// A tag in the ids posim's world makes (provider_refs): runs that
    /// share one database (load shards) must not collide.
    pub namespace: Option<String>,
    /// How far the run is, in runbook milliseconds (set every half second):
    /// whoever shows the progress reads it.
    pub reached: Arc<AtomicU64>,
    /// A game day: the console and the facilitator's page, and where they listen.
    pub desk: Option<super::desk::DeskOptions>,
}

/// What a live run produced.
pub struct LiveOutcome {
    pub history: History,
    pub stack_requests: u64,
    pub simulated: Millis,
    pub purchases: u64,
    /// Things the report must say (e.g. "cannot redeploy").
    pub notes: Vec<String>,
    /// What ran the replicas: processes, containers, or a stack given by URL.
    pub launcher: &'static str,
    /// Whether `trace.jsonl` already holds every record (streamed as it went).
    pub trace_written: bool,
    /// posim's own lag over the run.
    pub harness: crate::harness::HarnessFigures,
}

/// One replica as posim's load balancer sees it.
impl Shared {
    /// Carries out the controller's commands (rollouts run in their own task).
    /// Lets the controller decide at runbook time `at` (never before the
    /// last record), carries out what it asks, and returns the indices of
    /// the decisions it logged. Every decision of a live run goes through here.
    pub(super) fn decide(
        self: &Arc<Self>,
        at: Millis,
        tasks: &mut JoinSet<()>,
        decide: impl FnOnce(&mut Controller, Millis, &mut History) -> Vec<Command>,
    ) -> std::ops::Range<usize> {
        let (commands, logged) = self.recorder.with(|history| {
            let before = history.decisions.len();
            let mut controller = self.controller.lock().expect("controller lock");
            let commands = decide(&mut controller, now_in(history, at), history);
            (commands, before..history.decisions.len())
        });
        self.carry_out(commands, tasks);
        logged
    }

    pub(super) fn carry_out(self: &Arc<Self>, commands: Vec<Command>, tasks: &mut JoinSet<()>) {
        for command in commands {
            let shared = Arc::clone(self);
            match command {
                Command::RollOut { deploy } => {
                    self.latest_deploy.store(deploy, Ordering::SeqCst);
                    tasks.spawn(async move {
                        if let Err(error) = shared.roll_out(deploy).await {
                            eprintln!("posim live: deploy {deploy} failed: {error}");
                        }
                    });
                }
                command => self.operator_command(command),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    Launch(#[from] LaunchError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs `scenario` live to its end and returns the history.
pub async fn run(scenario: &Scenario, options: LiveOptions) -> Result<LiveOutcome, LiveError> {
    let started = start(scenario, options, None).await?;
    let outcome = drive(&started.shared, started.shared.options.seed).await;
    let (purchases, fault_notes) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            finish(started).await;
            return Err(error);
        }
    };
    let simulated = scenario.end();
    let mut finished = finish(started).await;
    finished.notes.extend(fault_notes);
    let Finished { history, stack_requests, notes, launcher, trace_written, harness } = finished;
    Ok(LiveOutcome { history, stack_requests, simulated, purchases, notes, launcher, trace_written, harness })
}

/// A live run's parts, up: the world serving, the launcher ready (no
/// replica deployed yet), and what every task shares.
pub(crate) struct Started {
    pub(crate) shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    notes: Vec<String>,
    /// Samples posim's scheduling delay from the start to the finish.
    lag_ticker: tokio::task::JoinHandle<()>,
}

/// What a live run leaves once its stack is shut down.
pub(crate) struct Finished {
    pub(crate) history: History,
    pub(crate) stack_requests: u64,
    pub(crate) notes: Vec<String>,
    pub(crate) launcher: &'static str,
    pub(crate) trace_written: bool,
    pub(crate) harness: crate::harness::HarnessFigures,
}

/// Starts the world and the launcher of a run of `scenario` (`observer`
/// is told of every stack request: a load run measures with it).
pub(crate) async fn start(
    scenario: &Scenario,
    options: LiveOptions,
    observer: Option<Arc<dyn super::shared::Observe>>,
) -> Result<Started, LiveError> {
    sweep_dead_runs().await;
    let clock = Clock::new(options.time_scale);
    let fleet = &scenario.fleet;
    let history = History {
        condominiums: fleet.condominiums.iter().map(|c| c.id).collect(),
        machine_ids: fleet.machines.iter().map(|m| m.id.clone()).collect(),
        ..History::default()
    };
    std::fs::create_dir_all(&options.report_dir)?;
    let trace = match options.trace {
        true => Some(TraceSink::create(&options.report_dir.join("trace.jsonl"))?),
        false => None,
    };
    let recorder = Arc::new(Recorder::new(clock, history, trace));
    let faults = FaultPlan::new(options.seed, scenario.faults.clone());
    let cycle_length = (scenario.traffic.cycle_length.0 + scenario.traffic.cycle_length.1) / 2;
    let context = LiveContext {
        recorder: Arc::clone(&recorder),
        faults: faults.clone(),
        latency: scenario.latency.clone(),
        iot_timeout: scenario.stack.settings.iot_timeout,
        psp_timeout: scenario.stack.psp_timeout,
        phase: AtomicU16::new(0),
    };
    let world = World::live(fleet, cycle_length, context);
    if let Some(namespace) = &options.namespace {
        world.namespace_charges(namespace);
    }
    let (world_port, world_path) = serve_world(&world, &options).await?;
    let world_url = format!("http://127.0.0.1:{world_port}{world_path}");
    let scale = |ms: Millis| ((ms as f64 / options.time_scale).round() as Millis).max(1);
    let wall_settings = StackSettings {
        cycle_ttl: scale(scenario.stack.settings.cycle_ttl).max(1000),
        iot_timeout: scale(scenario.stack.settings.iot_timeout).max(50),
    };
    let psp_timeout = scale(scenario.stack.psp_timeout).max(50);
    let replicas = usize::from(scenario.stack.replicas);
    let choice = options.stack.clone();
    let run = Arc::clone(&options.run);
    let mut launcher = Launcher::new(
        choice,
        replicas,
        (world_port, world_path),
        (wall_settings, psp_timeout),
        options.logs.clone(),
        run,
    )
    .await?;
    launcher.set_command_expiry(scale(crate::faults::COMMAND_EXPIRY));
    let mut notes = Vec::new();
    if scenario.faults.iter().any(|fault| fault.kind == crate::faults::FaultKind::ClockSkew)
        && let Err(note) = launcher.skew_clocks(faults.clone(), options.time_scale)
    {
        notes.push(note);
    }
    if !launcher.can_redeploy() {
        notes.push(
            "the stack was given by URL: posim could not redeploy it, so phase configs and rollbacks were not applied"
                .into(),
        );
    }
    let send_delay = super::lag::SendDelay::from_env().map_err(LaunchError::Spawn)?;
    let lag = Arc::new(super::lag::LagWatch::new());
    let lag_ticker = tokio::spawn({
        let lag = Arc::clone(&lag);
        async move { lag.tick().await }
    });
    let (asks, inbox) = match options.desk {
        Some(_) => {
            let (asks, inbox) = super::desk::inbox();
            (Some(asks), Some(inbox))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        options: options.clone(),
        recorder: Arc::clone(&recorder),
        faults,
        http: super::http_client::client().map_err(std::io::Error::other)?,
        world,
        world_url,
        slots: Mutex::new(vec![Slot { url: None, deploy: 0, serving: false, bad_build_error_rate: 0.0 }; replicas]),
        cursor: AtomicUsize::new(0),
        next_request: AtomicU32::new(0),
        stack_requests: AtomicU64::new(0),
        bad_build: KeyedRoll::new(options.seed, "bad-build"),
        latest_deploy: AtomicU16::new(0),
        controller: Mutex::new(Controller::new(scenario)),
        launcher: tokio::sync::Mutex::new(launcher),
        registry: Mutex::new(BTreeMap::new()),
        traffic: TrafficPlan::new(scenario, options.seed),
        operator: Mutex::new(Operator::new(scenario.fleet.clone())),
        operations: Mutex::new(JoinSet::new()),
        observer,
        inbox,
        lag: Arc::clone(&lag),
        send_delay,
    });
    if let (Some(desk), Some(asks)) = (&options.desk, asks) {
        super::desk::open(&shared, asks, desk).await?;
    }
    Ok(Started { shared, recorder, notes, lag_ticker })
}

/// Shuts the stack down and takes the history out.
pub(crate) async fn finish(started: Started) -> Finished {
    let Started { shared, recorder, notes, lag_ticker } = started;
    lag_ticker.abort();
    let mut stack = shared.launcher.lock().await;
    let launcher = stack.kind();
    stack.shutdown().await;
    drop(stack);
    let stack_requests = shared.stack_requests.load(Ordering::Relaxed);
    let harness = shared.lag.figures(shared.options.time_scale);
    drop(shared);
    // The world's server may still hold the recorder: take the history out.
    let (history, trace_written) = recorder.finish();
    Finished { history, stack_requests, notes, launcher, trace_written, harness }
}

/// Serves the world on loopback and, for containers, on the Docker bridge
/// they reach the host by — never on every interface. A stack posim starts
/// is told a per-run path; a stack given by URL was started before posim
/// and knows only the port. Returns the port and the path.
async fn serve_world(world: &Arc<World>, options: &LiveOptions) -> Result<(u16, String), LiveError> {
    let path = match options.stack {
        StackChoice::Url(_) => String::new(),
        _ => world::run_path(),
    };
    let loopback = std::net::Ipv4Addr::LOCALHOST;
    let port = world::serve_on(Arc::clone(world), loopback, options.world_port, &path).await?;
    if options.stack.world_must_face_containers() {
        let bridge = super::containers::host_gateway_ip().await?;
        world::serve_on(Arc::clone(world), bridge, port, &path).await?;
    }
    Ok((port, path))
}

/// The run itself: first deploy, then traffic, analysis, sweeps and the
/// operator's script until the horizon, the drain, and the final audit.
async fn drive(shared: &Arc<Shared>, seed: u64) -> Result<(u64, Vec<String>), LiveError> {
    let scenario = &shared.scenario;
    first_deploy(shared).await?;
    let end = scenario.end();
    write_partial_summary(shared, shared.clock().now(), end);
    let progress = tokio::spawn(progress(shared.clock(), Arc::clone(&shared.options.reached)));
    let traffic = tokio::spawn(super::terminals::arrivals(Arc::clone(shared), seed::stream(seed, "card")));
    let background = tokio::spawn(background(Arc::clone(shared), end));
    let stack_faults = tokio::spawn(super::stack_faults::play(Arc::clone(shared)));
    let done = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn(super::watch::replicas(Arc::clone(shared), Arc::clone(&done)));
    let purchases = traffic.await.map_err(std::io::Error::other)?;
    background.await.map_err(std::io::Error::other)?;
    let mut notes = stack_faults.await.map_err(std::io::Error::other)?;
    progress.abort();
    shared.final_audit().await;
    done.store(true, Ordering::SeqCst);
    notes.extend(watch.await.map_err(std::io::Error::other)?);
    Ok((purchases, notes))
}

/// Deploys the first phase's config on every replica (the controller's
/// first command); a stack given by URL is read off its `/health`.
pub(crate) async fn first_deploy(shared: &Arc<Shared>) -> Result<(), LiveError> {
    let first = shared.recorder.with(|h| shared.controller.lock().expect("controller lock").start(0, h));
    let Some(Command::RollOut { deploy }) = first.first().cloned() else {
        unreachable!("the rollout starts with a deploy")
    };
    shared.latest_deploy.store(deploy, Ordering::SeqCst);
    shared.roll_out(deploy).await?; // a stack that cannot start ends the run, with its own output
    if !shared.launcher.lock().await.can_redeploy() {
        adopt_health(shared).await;
    }
    Ok(())
}

/// What runs killed before they could clean up left (one line if anything).
async fn sweep_dead_runs() {
    let cleaned = super::clean::dead_runs(false).await;
    if !cleaned.removed.is_empty() {
        let (runs, things) = (cleaned.runs, cleaned.removed.len());
        println!("posim live: removed {things} thing(s) that {runs} dead run(s) left (see `posim clean`)");
    }
    for problem in cleaned.problems {
        eprintln!("posim live: cleaning dead runs: {problem}");
    }
}

/// Keeps `reached` at the runbook time the run is at.
async fn progress(clock: Clock, reached: Arc<AtomicU64>) {
    loop {
        reached.store(clock.now(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A stack given by URL applies its own config: read it off `/health`
/// (CONTRACT.md) so that the gate is judged against what it really applies.
async fn adopt_health(shared: &Shared) {
    let Some(url) = shared.slots.lock().expect("slots lock").first().and_then(|s| s.url.clone()) else { return };
    let health: Option<Health> = match shared.http.get(format!("{url}/health")).send().await {
        Ok(response) => response.json().await.ok(),
        Err(_) => None,
    };
    let canary = health.map(|health| health.canary);
    // Lists from another stack come in any order: normalise them.
    let canary = canary.map(|c| crate::contract::CanaryConfig::new(c.mode, c.allowlist, c.blocklist));
    if let Some(canary) = canary {
        shared.recorder.with(|h| h.deploys[0].canary = canary);
    }
}

/// Analysis ticks, sweeps and operator steps, in runbook time, until `end`.
async fn background(shared: Arc<Shared>, end: Millis) {
    let scenario = &shared.scenario;
    let clock = shared.clock();
    let mut tasks = JoinSet::new();
    let mut next_tick = scenario.criteria.analysis_interval;
    let mut next_sweep = scenario.stack.sweep_interval;
    let mut steps: Vec<(Millis, usize)> = scenario.operator.iter().enumerate().map(|(i, s)| (s.at, i)).collect();
    let mut injections = (0..scenario.inject.len()).peekable();
    loop {
        steps.sort_unstable();
        let next_step = steps.first().map_or(Millis::MAX, |s| s.0);
        let next_injection = injections.peek().map_or(Millis::MAX, |&index| scenario.inject[index].at);
        let at = next_tick.min(next_sweep).min(next_step).min(next_injection);
        if at > end {
            break;
        }
        tokio::select! {
            () = clock.sleep_until(at) => {}
            Some(ask) = super::desk::next_ask(&shared) => {
                shared.answer(ask, &mut tasks);
                continue;
            }
        }
        if at == next_injection {
            let Some(index) = injections.next() else { unreachable!("peeked") };
            let injection = &scenario.inject[index];
            shared.decide(at, &mut tasks, |controller, now, h| controller.inject(injection, now, h));
        } else if at == next_step {
            let (_, index) = steps.remove(0);
            let step = &scenario.operator[index];
            if let Some(every) = step.every {
                steps.push((at + every, index));
            }
            shared.decide(at, &mut tasks, |controller, now, h| controller.operator(step, now, h));
        } else if at == next_tick {
            next_tick += scenario.criteria.analysis_interval;
            shared.decide(at, &mut tasks, |controller, now, h| controller.tick(now, h));
            let phase = shared.controller.lock().expect("controller lock").phase();
            shared.world.set_phase(phase);
            write_partial_summary(&shared, at, end);
        } else {
            next_sweep += scenario.stack.sweep_interval;
            let shared = Arc::clone(&shared);
            tasks.spawn(async move {
                sweep(&shared).await;
            });
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(120), async { while tasks.join_next().await.is_some() {} }).await;
}

/// Leaves a summary that parses however the run ends from here on.
fn write_partial_summary(shared: &Shared, reached_ms: Millis, end_ms: Millis) {
    let phase = usize::from(shared.controller.lock().expect("controller lock").phase());
    let options = &shared.options;
    let (deploys, decisions, records) = shared.recorder.with(|h| (h.deploys.len(), h.decisions.len(), h.records.len()));
    let summary = PartialSummary {
        complete: false,
        verdict: "INCOMPLETE",
        scenario: &shared.scenario.name,
        seed: options.seed,
        reached_ms,
        end_ms,
        phase,
        deploys,
        decisions,
        records,
        trace: options.trace.then(|| options.report_dir.join("trace.jsonl")),
    };
    if let Err(error) = journal::write_partial(&options.report_dir, &summary) {
        eprintln!("posim live: cannot write the partial summary in {}: {error}", options.report_dir.display());
    }
}

/// One compensation sweep; returns how many payments it expired or compensated.
pub(crate) async fn sweep(shared: &Shared) -> u32 {
    if let Some(Reply::Sweep(report)) = shared.call(Endpoint::CompensationAlert, &Request::CompensationSweep).await {
        let (expired, compensated, backlog) = (report.expired, report.compensated, report.backlog);
        shared.record(Event::Swept { expired, compensated, backlog });
        return expired.saturating_add(compensated);
    }
    0
}
