//! `posim live`: the scenario against a real stack over HTTP, in runbook
//! time compressed by the time scale. posim serves the PSP and the gateway,
//! plays the terminals as tokio tasks on the seeded plan, redeploys the
//! stack at every decision, and records the same history the simulator
//! does — so the same checkers, KPIs, controller and report apply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use serde_json::Value;
use tokio::task::JoinSet;

use super::clock::{Clock, Recorder};
use super::launcher::{LaunchError, Launcher, StackChoice};
use super::world::{self, LiveContext, World};
use crate::contract::bodies::Health;
use crate::contract::wire::{reply_from_json, request_to_http};
use crate::contract::{Charge, Endpoint, ErrorCode, Reply, Request, StackSettings};
use crate::faults::FaultPlan;
use crate::history::{DownCause, Event, History};
use crate::operator::{Facts, Operator, Paid};
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
    /// Where posim's PSP and gateway listen (0: a free port); a stack given
    /// by URL must have been started pointing at it.
    pub world_port: u16,
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
}

/// One replica as posim's load balancer sees it.
#[derive(Clone, Debug)]
struct Slot {
    url: Option<String>,
    deploy: u16,
    serving: bool,
    /// The share of requests the deploy's build fails (posim injects it here).
    bad_build_error_rate: f64,
}

/// What every task of the run shares.
pub(super) struct Shared {
    pub(super) scenario: Scenario,
    pub(super) recorder: Arc<Recorder>,
    pub(super) faults: FaultPlan,
    pub(super) http: reqwest::Client,
    pub(super) world: Arc<World>,
    pub(super) world_url: String,
    slots: Mutex<Vec<Slot>>,
    cursor: AtomicUsize,
    next_request: AtomicU32,
    pub(super) stack_requests: AtomicU64,
    bad_build: KeyedRoll,
    latest_deploy: AtomicU16,
    controller: Mutex<Controller>,
    pub(super) launcher: tokio::sync::Mutex<Launcher>,
    /// Per purchase number: its idempotency key and, once authorized, its payment.
    pub(super) registry: Mutex<BTreeMap<u32, (crate::contract::Text, Option<uuid::Uuid>)>>,
    /// The traffic plan, as the simulator has it.
    pub(super) traffic: TrafficPlan,
    pub(super) operator: Mutex<Operator>,
    /// The operator's requests and wake-ups in flight.
    pub(super) operations: Mutex<JoinSet<()>>,
}

/// The answer to one request, as the client saw it.
pub(super) enum Heard {
    Reply(Reply),
    Nothing,
}

impl Shared {
    pub(super) fn clock(&self) -> Clock {
        self.recorder.clock
    }

    pub(super) fn record(&self, event: Event) {
        self.recorder.record(event);
    }

    pub(super) fn new_request(&self) -> u32 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    fn pick(&self) -> Option<(u16, String, u16, f64)> {
        let slots = self.slots.lock().expect("slots lock");
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..slots.len()).map(|offset| (start + offset) % slots.len()).find_map(|i| {
            let slot = &slots[i];
            slot.url.clone().filter(|_| slot.serving).map(|url| (i as u16, url, slot.deploy, slot.bad_build_error_rate))
        })
    }

    /// Sends `request` to a serving replica and records what the stack
    /// answered; `drop_answer` is a response lost after the stack acted.
    pub(super) async fn send(&self, id: u32, request: &Request, timeout: Millis, drop_answer: bool) -> Heard {
        let Some((replica, url, deploy, rate)) = self.pick() else {
            let reply = Reply::error(ErrorCode::Unavailable, "no replica is serving");
            self.record(Event::answered(id, reply.http_status(), &reply));
            return Heard::Reply(reply);
        };
        self.stack_requests.fetch_add(1, Ordering::Relaxed);
        let exposed = matches!(request, Request::Confirm(_) | Request::ExecuteCycle(_));
        if exposed && rate > 0.0 && self.bad_build.unit([u64::from(id), u64::from(deploy), 0]) < rate {
            self.record(Event::Received { request: id, replica, config: deploy });
            let reply = Reply::error(ErrorCode::Unavailable, "the build failed this request");
            self.record(Event::answered(id, reply.http_status(), &reply));
            return Heard::Reply(reply);
        }
        let (method, path, body) = request_to_http(request);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a contract method");
        let mut call = self.http.request(method, format!("{url}{path}")).timeout(self.clock().wall(timeout));
        if let Some(body) = body {
            call = call.json(&body);
        }
        let Ok(response) = call.send().await else { return Heard::Nothing };
        self.record(Event::Received { request: id, replica, config: deploy });
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let reply = reply_from_json(request.endpoint(), status, &body).unwrap_or_else(|error| {
            Reply::error(ErrorCode::Unavailable, format!("the stack broke the contract: {error}"))
        });
        self.record(Event::answered(id, status, &reply));
        if drop_answer { Heard::Nothing } else { Heard::Reply(reply) }
    }

    /// A posim-side request (sweep, probe, audit, operator): sent, answered.
    pub(super) async fn call(&self, endpoint: Endpoint, request: &Request) -> Option<Reply> {
        let id = self.new_request();
        self.record(Event::sent_by_posim(id, endpoint));
        match self.send(id, request, 60_000, false).await {
            Heard::Reply(reply) => Some(reply),
            Heard::Nothing => None,
        }
    }

    /// Carries out the controller's commands (rollouts run in their own task).
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

    /// A rolling deploy, one replica at a time (all at once for the first).
    async fn roll_out(&self, deploy: u16) -> Result<(), LaunchError> {
        let canary = self.recorder.with(|h| h.deploys[usize::from(deploy)].canary.clone());
        let count = self.slots.lock().expect("slots lock").len();
        if deploy > 0 && !self.launcher.lock().await.can_redeploy() {
            return Ok(()); // a stack given by URL keeps the config it has
        }
        for replica in 0..count {
            if self.latest_deploy.load(Ordering::SeqCst) != deploy {
                return Ok(()); // a newer decision took over
            }
            if deploy > 0 {
                self.take_out(replica as u16);
                self.record(Event::ReplicaDown { replica: replica as u16, cause: DownCause::Deploy });
            }
            let mut launcher = self.launcher.lock().await;
            launcher.deploy(replica, &canary).await?;
            self.put_back(replica as u16, launcher.url(replica), deploy);
            drop(launcher);
            self.record(Event::ReplicaUp { replica: replica as u16, config: deploy });
        }
        Ok(())
    }

    /// The balancer serves the replica at `url`, which runs `deploy`.
    pub(super) fn put_back(&self, replica: u16, url: Option<String>, deploy: u16) {
        let bad_build_error_rate = self.recorder.with(|h| h.deploys[usize::from(deploy)].bad_build_error_rate);
        let mut slots = self.slots.lock().expect("slots lock");
        slots[usize::from(replica)] = Slot { url, deploy, serving: true, bad_build_error_rate };
    }

    /// The balancer stops serving the replica; returns the deploy it ran.
    pub(super) fn take_out(&self, replica: u16) -> u16 {
        let mut slots = self.slots.lock().expect("slots lock");
        let slot = &mut slots[usize::from(replica)];
        slot.serving = false;
        slot.deploy
    }
}

/// What the operator reads off the live world.
impl Facts for Shared {
    fn paid(&self, purchase: u32) -> Option<Paid> {
        let registry = self.registry.lock().expect("registry lock");
        let (idempotency_key, payment) = registry.get(&purchase)?;
        Some(Paid { payment: (*payment)?, idempotency_key: idempotency_key.clone(), condominium: None })
    }

    fn charges(&self, payment: uuid::Uuid) -> Vec<Charge> {
        self.world.charges(payment)
    }

    fn cycles(&self, payment: uuid::Uuid) -> usize {
        let started = |event: &Event| matches!(event, Event::CycleStarted { payment: p, .. } if *p == payment);
        self.recorder.with(|history| history.records.iter().filter(|record| started(&record.event)).count())
    }

    fn latest_deploy(&self) -> u16 {
        self.latest_deploy.load(Ordering::SeqCst)
    }

    fn serves_everywhere(&self, deploy: u16) -> bool {
        self.slots.lock().expect("slots lock").iter().all(|slot| slot.serving && slot.deploy == deploy)
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
    let clock = Clock::new(options.time_scale);
    let fleet = &scenario.fleet;
    let history = History {
        condominiums: fleet.condominiums.iter().map(|c| c.id).collect(),
        machine_ids: fleet.machines.iter().map(|m| m.id.clone()).collect(),
        ..History::default()
    };
    let recorder = Arc::new(Recorder::new(clock, history));
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
    let bind = match options.stack.world_must_face_containers() {
        true => std::net::Ipv4Addr::UNSPECIFIED,
        false => std::net::Ipv4Addr::LOCALHOST,
    };
    let world_port = world::serve_on(Arc::clone(&world), bind, options.world_port).await?;
    let world_url = format!("http://127.0.0.1:{world_port}");
    let scale = |ms: Millis| ((ms as f64 / options.time_scale).round() as Millis).max(1);
    let wall_settings = StackSettings {
        cycle_ttl: scale(scenario.stack.settings.cycle_ttl).max(1000),
        iot_timeout: scale(scenario.stack.settings.iot_timeout).max(50),
    };
    let psp_timeout = scale(scenario.stack.psp_timeout).max(50);
    let replicas = usize::from(scenario.stack.replicas);
    let choice = options.stack.clone();
    let launcher =
        Launcher::new(choice, replicas, world_port, (wall_settings, psp_timeout), options.logs.clone()).await?;
    let mut notes = Vec::new();
    if !launcher.can_redeploy() {
        notes.push(
            "the stack was given by URL: posim could not redeploy it, so phase configs and rollbacks were not applied"
                .into(),
        );
    }
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        recorder: Arc::clone(&recorder),
        faults,
        http: reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(std::io::Error::other)?,
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
    });
    let outcome = drive(&shared, options.seed).await;
    let mut stack = shared.launcher.lock().await;
    let launcher = stack.kind();
    stack.shutdown().await;
    drop(stack);
    let (purchases, fault_notes) = outcome?;
    notes.extend(fault_notes);
    let stack_requests = shared.stack_requests.load(Ordering::Relaxed);
    let simulated = scenario.horizon() + scenario.drain;
    drop(shared);
    // The world's server may still hold the recorder: take the history out.
    let history = recorder.with(std::mem::take);
    Ok(LiveOutcome { history, stack_requests, simulated, purchases, notes, launcher })
}

/// The run itself: first deploy, then traffic, analysis, sweeps and the
/// operator's script until the horizon, the drain, and the final audit.
async fn drive(shared: &Arc<Shared>, seed: u64) -> Result<(u64, Vec<String>), LiveError> {
    let scenario = &shared.scenario;
    let first = shared.recorder.with(|h| shared.controller.lock().expect("controller lock").start(0, h));
    let Some(Command::RollOut { deploy }) = first.first().cloned() else {
        unreachable!("the rollout starts with a deploy")
    };
    shared.latest_deploy.store(deploy, Ordering::SeqCst);
    shared.roll_out(deploy).await?; // a stack that cannot start ends the run, with its own output
    if !shared.launcher.lock().await.can_redeploy() {
        adopt_health(shared).await;
    }
    let end = scenario.horizon() + scenario.drain;
    let progress = tokio::spawn(progress(shared.clock(), end));
    let traffic = tokio::spawn(super::terminals::arrivals(Arc::clone(shared), seed::stream(seed, "card")));
    let background = tokio::spawn(background(Arc::clone(shared), end));
    let stack_faults = tokio::spawn(super::stack_faults::play(Arc::clone(shared)));
    let purchases = traffic.await.map_err(std::io::Error::other)?;
    background.await.map_err(std::io::Error::other)?;
    let notes = stack_faults.await.map_err(std::io::Error::other)?;
    progress.abort();
    shared.final_audit().await;
    Ok((purchases, notes))
}

/// A bar over runbook time on stderr (invisible when stderr is not a terminal).
async fn progress(clock: Clock, end: Millis) {
    let bar = indicatif::ProgressBar::new(end / 1000);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("live {bar:40} {percent}% of the runbook time ({elapsed})")
    {
        bar.set_style(style);
    }
    loop {
        bar.set_position(clock.now() / 1000);
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
    loop {
        steps.sort_unstable();
        let next_step = steps.first().map_or(Millis::MAX, |s| s.0);
        let at = next_tick.min(next_sweep).min(next_step);
        if at > end {
            break;
        }
        clock.sleep_until(at).await;
        if at == next_step {
            let (_, index) = steps.remove(0);
            let step = &scenario.operator[index];
            if let Some(every) = step.every {
                steps.push((at + every, index));
            }
            let commands = shared
                .recorder
                .with(|h| shared.controller.lock().expect("controller lock").operator(step, now_in(h, at), h));
            shared.carry_out(commands, &mut tasks);
        } else if at == next_tick {
            next_tick += scenario.criteria.analysis_interval;
            let commands =
                shared.recorder.with(|h| shared.controller.lock().expect("controller lock").tick(now_in(h, at), h));
            let phase = shared.controller.lock().expect("controller lock").phase();
            shared.world.set_phase(phase);
            shared.carry_out(commands, &mut tasks);
        } else {
            next_sweep += scenario.stack.sweep_interval;
            let shared = Arc::clone(&shared);
            tasks.spawn(async move { sweep(&shared).await });
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(120), async { while tasks.join_next().await.is_some() {} }).await;
}

/// The scheduled time of a tick or step, never before the last record (the
/// history stays in order; a late wake-up does not shift the runbook's schedule).
pub(super) fn now_in(history: &History, at: Millis) -> Millis {
    at.max(history.records.last().map_or(0, |r| r.at))
}

async fn sweep(shared: &Shared) {
    if let Some(Reply::Sweep(report)) = shared.call(Endpoint::CompensationAlert, &Request::CompensationSweep).await {
        let (expired, compensated, backlog) = (report.expired, report.compensated, report.backlog);
        shared.record(Event::Swept { expired, compensated, backlog });
    }
}

/// A uniform draw in `[low, high]`.
pub(super) fn between(rng: &mut rand_chacha::ChaCha8Rng, (low, high): (Millis, Millis)) -> Millis {
    rng.random_range(low..=high)
}
