//! The deterministic engine: the world, the fault plan and the reference
//! stack's core on one virtual clock, in one thread. Same scenario, same
//! seed, same bug switches: the same history, byte for byte.
//!
//! `replicas` is the stack's side (deploys, crashes, effects against the
//! store, the PSP and the machines); `terminals` is the customers' side
//! (arrivals, requests, retries, the sweep's cron and the final audit);
//! `runbook` carries out the controller's commands (rollouts here; probes,
//! audits and reprocessing through the sans-IO operator) and the
//! operator's script.

mod nemesis;
mod queue;
mod replicas;
mod runbook;
mod terminals;

use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;

use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::contract::{CanaryConfig, Endpoint, Reply, Request};
use crate::faults::FaultPlan;
use crate::history::{Event, History};
use crate::judge::HistoryIndex;
use crate::operator::{Operator, Token};
use crate::rollout::controller::Controller;
use crate::scenario::Scenario;
use crate::seed;
use crate::seed::KeyedRoll;
use crate::stack::core::IdSource;
use crate::stack::store::MemoryStore;
use crate::stack::{BugSet, Operation, Stack};
use crate::time::Millis;
use crate::traffic::{PlannedPurchase, TrafficPlan};
use crate::world::outcomes::At;
use crate::world::{Purchase, WorldState};

use queue::Agenda;

/// The legs a latency is drawn for, each on its own keyed stream.
#[derive(Clone, Copy, Debug)]
enum Leg {
    TerminalToStack,
    StackToTerminal,
    StackPsp,
    StackIot,
    Card,
    /// How long a started cycle keeps its machine busy.
    Cycle,
}

const LEGS: [Leg; 6] =
    [Leg::TerminalToStack, Leg::StackToTerminal, Leg::StackPsp, Leg::StackIot, Leg::Card, Leg::Cycle];

/// What a run is asked for beyond the scenario.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimOptions {
    pub seed: u64,
    pub bugs: BugSet,
}

/// What a run produced.
pub struct SimOutcome {
    pub history: History,
    /// Requests that reached the stack (terminals' and the sweep's).
    pub stack_requests: u64,
    /// Virtual time covered, drain included.
    pub simulated: Millis,
    pub purchases: u64,
    /// The controller's history index, caught up with the last record: the
    /// judge reads it instead of indexing the history a second time.
    pub index: HistoryIndex,
}

/// How often (in events) a run reports its progress.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Runs `scenario` to its end and returns the history.
pub fn run(scenario: &Scenario, options: SimOptions) -> SimOutcome {
    run_observed(scenario, options, &mut |_| {})
}

/// Like [`run`], calling `progress` with the virtual time now and then (for
/// a progress bar: the run itself never looks at the wall clock).
pub fn run_observed(scenario: &Scenario, options: SimOptions, progress: &mut dyn FnMut(Millis)) -> SimOutcome {
    let mut sim = Sim::new(scenario, options);
    sim.start();
    let end = scenario.end();
    let mut handled = 0u64;
    while let Some((at, event)) = sim.agenda.pop_until(end) {
        debug_assert!(at >= sim.now, "time never goes back");
        sim.now = at;
        sim.handle(event);
        handled += 1;
        if handled.is_multiple_of(PROGRESS_EVERY) {
            progress(sim.now);
        }
    }
    sim.now = end;
    sim.audit();
    let mut index = std::mem::take(&mut sim.controller.index);
    index.catch_up(&sim.history);
    SimOutcome {
        stack_requests: sim.stack_requests,
        simulated: end,
        purchases: sim.purchases.started,
        history: sim.history,
        index,
    }
}

#[derive(Debug)]
enum SimEvent {
    /// The controller judges the window (every analysis interval).
    Analysis,
    /// A step of the operator's script.
    Operator {
        step: u16,
    },
    /// An incident of the game day's sealed script (`[[inject]]`).
    Inject {
        index: u16,
    },
    /// The operator's wake-up (a probe or a reprocess retry is due).
    OperatorWake {
        token: Token,
    },
    DeployStep {
        config: u16,
        replica: u16,
    },
    ReplicaRestarted {
        config: u16,
        replica: u16,
    },
    ReplicaRecovered {
        replica: u16,
        incarnation: u32,
    },
    /// The plan's next customer arrives.
    Arrival,
    /// The purchase sends its current step's request (again).
    SendStep {
        purchase: u32,
    },
    /// A duplicate of a request leaves the terminal.
    SendTwin {
        request: u32,
    },
    AtStack {
        request: u32,
    },
    /// An effect's outcome is back at the operation.
    Resume {
        op: u32,
        serial: u64,
    },
    /// A paused replica carries out the effect it was holding.
    Continue {
        op: u32,
        serial: u64,
    },
    /// A planned `[[stack_faults]]` entry begins, or ends.
    StackFault {
        index: u16,
        ended: bool,
    },
    /// A refund held back by `refund_late` lands at the PSP.
    RefundLands {
        refund: u32,
    },
    /// A start command reaches its machine.
    AtMachine {
        command: u32,
    },
    AtTerminal {
        request: u32,
    },
    Timeout {
        request: u32,
    },
    CardCharged {
        purchase: u32,
    },
    Sweep,
}

/// A request as the terminal (or the cron) sent it.
struct RequestSlot {
    purchase: u32,
    endpoint: Endpoint,
    attempt: u8,
    twin: bool,
    /// Which copy of the request this is (0: the original), for its latency.
    copy: u8,
    /// The terminal has heard an answer or given up waiting.
    settled: bool,
    /// Boxed: most slots are settled and empty, and a run keeps them all.
    request: Option<Box<Request>>,
    reply: Option<Box<Reply>>,
}

/// Who started an operation (each carries its request id).
#[derive(Clone, Copy, Debug)]
enum Origin {
    Terminal(u32),
    Cron(u32),
    Operator(u32),
}

impl Origin {
    fn request(self) -> u32 {
        match self {
            Origin::Terminal(id) | Origin::Cron(id) | Origin::Operator(id) => id,
        }
    }
}

/// An operation in progress on a replica.
struct OpSlot {
    operation: Operation,
    stack: Rc<Stack>,
    replica: u16,
    incarnation: u32,
    origin: Origin,
    condominium: Option<u32>,
    serial: u64,
    /// Effects resolved so far (names crash points).
    step: u32,
    pending: Option<crate::stack::Input>,
    /// The effect a paused replica has not carried out yet.
    held: Option<crate::stack::Effect>,
}

struct Replica {
    stack: Rc<Stack>,
    config: u16,
    serving: bool,
    incarnation: u32,
    /// The replica does nothing in `[paused_since, paused_until)` (a pause).
    paused_since: Millis,
    paused_until: Millis,
    /// How far this process's clock is ahead (or behind) of true time.
    clock_offset_ms: i64,
}

/// A start command on its way to a machine.
struct InFlightCommand {
    command: crate::contract::StartCycleCommand,
    machine: u32,
    fault: Option<crate::faults::FaultKind>,
    op: u32,
    serial: u64,
    sent_at: Millis,
    round_trip: Millis,
    /// The world's key of the call (the cycle's length is drawn on it).
    key: crate::faults::FaultKey,
    /// A bad build sent it twice: the machine runs a second cycle.
    doubled: bool,
}

/// The purchases by number. A planned customer who found every machine
/// taken left a gap: numbers follow the traffic plan, not the run.
#[derive(Default)]
struct Purchases {
    by_number: Vec<Option<Purchase>>,
    started: u64,
}

impl Purchases {
    fn insert(&mut self, number: u32, purchase: Purchase) {
        assert!(number as usize >= self.by_number.len(), "purchases start in plan order");
        self.by_number.resize_with(number as usize, || None);
        self.by_number.push(Some(purchase));
        self.started += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &Purchase> {
        self.by_number.iter().flatten()
    }

    /// The purchase of that number, if it started.
    fn get(&self, number: usize) -> Option<&Purchase> {
        self.by_number.get(number).and_then(Option::as_ref)
    }
}

impl std::ops::Index<usize> for Purchases {
    type Output = Purchase;

    fn index(&self, number: usize) -> &Purchase {
        self.by_number[number].as_ref().expect("only started purchases are referred to")
    }
}

impl std::ops::IndexMut<usize> for Purchases {
    fn index_mut(&mut self, number: usize) -> &mut Purchase {
        self.by_number[number].as_mut().expect("only started purchases are referred to")
    }
}

/// Seeded UUIDs for the stack's ids.
struct SeededIds(ChaCha8Rng);

impl IdSource for SeededIds {
    fn next_uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(rand::RngExt::random(&mut self.0)).into_uuid()
    }
}

struct Sim<'s> {
    scenario: &'s Scenario,
    bugs: BugSet,
    now: Millis,
    agenda: Agenda<SimEvent>,
    faults: FaultPlan,
    latency_rolls: Vec<KeyedRoll>,
    traffic: TrafficPlan,
    /// The customer the pending `Arrival` brings.
    next_arrival: Option<PlannedPurchase>,
    ids: SeededIds,
    store: MemoryStore,
    stacks: Vec<Rc<Stack>>,
    replicas: Vec<Replica>,
    /// Boxed so that parking and resuming an operation moves a pointer.
    ops: Vec<Option<Box<OpSlot>>>,
    free_ops: Vec<u32>,
    op_serial: u64,
    requests: Vec<RequestSlot>,
    commands: Vec<InFlightCommand>,
    purchases: Purchases,
    /// The purchase holding each machine (a customer stands at it).
    reserved: Vec<Option<u32>>,
    /// The PSP and the gateway in front of the machines, with their faults.
    world: WorldState,
    history: History,
    controller: Controller,
    /// The deploy the controller decided last (older rollouts stop).
    latest_deploy: u16,
    bad_build: KeyedRoll,
    /// Each deploy's per-endpoint bad build (all zero: sound), by deploy.
    builds: Vec<crate::scenario::phases::BadBuild>,
    operator: Operator,
    /// The operator's requests in flight, by request id.
    operator_requests: HashMap<u32, Token>,
    horizon: Millis,
    lb_cursor: usize,
    stack_requests: u64,
    /// The database answers nothing before this (a planned outage).
    database_down_until: Millis,
    /// Refunds held back by `refund_late`, landing later.
    late_refunds: Vec<crate::world::psp::PspRequest>,
}

impl<'s> Sim<'s> {
    fn new(scenario: &'s Scenario, options: SimOptions) -> Self {
        let fleet = &scenario.fleet;
        let nothing = Rc::new(Stack::new(CanaryConfig::off(), scenario.stack.settings, options.bugs));
        let replicas = (0..scenario.stack.replicas)
            .map(|_| Replica {
                stack: Rc::clone(&nothing),
                config: 0,
                serving: false,
                incarnation: 0,
                paused_since: 0,
                paused_until: 0,
                clock_offset_ms: 0,
            })
            .collect();
        let history = History {
            condominiums: fleet.condominiums.iter().map(|c| c.id).collect(),
            machine_ids: fleet.machines.iter().map(|m| m.id.clone()).collect(),
            ..History::default()
        };
        let faults = FaultPlan::new(options.seed, scenario.faults.clone());
        Sim {
            scenario,
            bugs: options.bugs,
            now: 0,
            agenda: Agenda::new(),
            world: WorldState::new(fleet, faults.clone()),
            faults,
            latency_rolls: LEGS.iter().map(|leg| KeyedRoll::new(options.seed, &format!("latency:{leg:?}"))).collect(),
            traffic: TrafficPlan::new(scenario, options.seed),
            next_arrival: None,
            ids: SeededIds(seed::stream(options.seed, "stack-ids")),
            store: MemoryStore::default(),
            stacks: Vec::new(),
            replicas,
            ops: Vec::new(),
            free_ops: Vec::new(),
            op_serial: 0,
            requests: Vec::new(),
            commands: Vec::new(),
            purchases: Purchases::default(),
            reserved: vec![None; fleet.machines.len()],
            history,
            controller: Controller::new(scenario),
            latest_deploy: 0,
            bad_build: KeyedRoll::new(options.seed, "bad-build"),
            builds: Vec::new(),
            operator: Operator::new(fleet.clone()),
            operator_requests: HashMap::default(),
            horizon: scenario.horizon(),
            lb_cursor: 0,
            stack_requests: 0,
            database_down_until: 0,
            late_refunds: Vec::new(),
        }
    }

    fn start(&mut self) {
        let commands = self.controller.start(0, &mut self.history);
        self.carry_out(commands);
        self.agenda.schedule(self.scenario.criteria.analysis_interval, SimEvent::Analysis);
        for (index, step) in self.scenario.operator.iter().enumerate() {
            self.agenda.schedule(step.at, SimEvent::Operator { step: index as u16 });
        }
        for (index, injection) in self.scenario.inject.iter().enumerate() {
            self.agenda.schedule(injection.at, SimEvent::Inject { index: index as u16 });
        }
        self.schedule_arrival();
        self.agenda.schedule(self.scenario.stack.sweep_interval, SimEvent::Sweep);
        for (index, fault) in self.scenario.stack_faults.iter().enumerate() {
            self.agenda.schedule(fault.at, SimEvent::StackFault { index: index as u16, ended: false });
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Analysis => self.analysis(),
            SimEvent::Operator { step } => self.operator_step(step),
            SimEvent::Inject { index } => self.inject(index),
            SimEvent::OperatorWake { token } => self.operator_wake(token),
            SimEvent::DeployStep { config, replica } => self.deploy_step(config, replica),
            SimEvent::ReplicaRestarted { config, replica } => self.replica_restarted(config, replica),
            SimEvent::ReplicaRecovered { replica, incarnation } => self.replica_recovered(replica, incarnation),
            SimEvent::Arrival => self.arrival(),
            SimEvent::SendStep { purchase } => self.send_step(purchase),
            SimEvent::SendTwin { request } => self.send_twin(request),
            SimEvent::AtStack { request } => self.at_stack(request),
            SimEvent::Resume { op, serial } => self.resume(op, serial),
            SimEvent::Continue { op, serial } => self.continue_held(op, serial),
            SimEvent::StackFault { index, ended } => self.stack_fault(index, ended),
            SimEvent::RefundLands { refund } => self.refund_lands(refund),
            SimEvent::AtMachine { command } => self.at_machine(command),
            SimEvent::AtTerminal { request } => self.at_terminal(request),
            SimEvent::Timeout { request } => self.timeout(request),
            SimEvent::CardCharged { purchase } => self.card_charged(purchase),
            SimEvent::Sweep => self.sweep(),
        }
    }

    fn record(&mut self, event: Event) {
        self.history.push(self.now, event);
    }

    /// When a call reaches the world, for its fault scopes.
    fn at(&self) -> At {
        At { now: self.now, phase: self.controller.phase() }
    }

    /// A uniform draw in the leg's `[low, high]`, keyed on the stable ids
    /// of what travels (so that a fault added elsewhere moves nothing here).
    fn latency(&self, leg: Leg, ids: [u64; 3]) -> Millis {
        let latency = &self.scenario.latency;
        let (low, high) = match leg {
            Leg::TerminalToStack | Leg::StackToTerminal => latency.terminal_stack,
            Leg::StackPsp => latency.stack_psp,
            Leg::StackIot => latency.stack_iot,
            Leg::Card => latency.card,
            Leg::Cycle => self.scenario.traffic.cycle_length,
        };
        let unit = self.latency_rolls[leg as usize].unit(ids);
        low + ((unit * (high - low + 1) as f64) as Millis).min(high - low)
    }
}
