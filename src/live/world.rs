//! The world posim serves around a live stack (CONTRACT.md, "The world's
//! API"): the PSP's charges and refunds and the IoT gateway in front of the
//! machines, with the same ledgers and firmware as the simulator. One
//! listener serves both (their paths do not collide), so `PSP_BASE_URL` and
//! `IOT_GATEWAY_URL` may name the same address.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::clock::Recorder;
use crate::contract::world_api::{
    ChargeList, ChargeRequest, ChargesQuery, Command, CommandReply, CommandResult, CycleList, CyclesQuery, Refund,
    WorldError,
};
use crate::contract::{Charge, ChargeStatus, CycleRecord, StartCycleCommand, Text};
use crate::faults::{FaultKey, FaultPlan};
use crate::history::{Event, served_events};
use crate::scenario::Latency;
use crate::time::{self, Millis};
use crate::world::calls::Called;
use crate::world::gateway::{CyclesAnswer, GatewayAnswer, Route};
use crate::world::outcomes::{At, AtMachine, Fired, Truth, UNCHARGED};
use crate::world::psp::{PspAnswer, PspRequest, RefundOutcome};
use crate::world::{Fleet, WorldState};
use uuid::Uuid;

/// What a live run adds to the world: the history it writes ground truth
/// into, the fault plan it rolls at its boundaries, and the latencies it plays.
pub struct LiveContext {
    pub recorder: Arc<Recorder>,
    pub faults: FaultPlan,
    pub latency: Latency,
    pub iot_timeout: Millis,
    pub psp_timeout: Millis,
    /// The plan phase in effect (for fault scopes), kept by the engine.
    pub phase: std::sync::atomic::AtomicU16,
}

/// The world's ground truth, shared by the handlers: the simulator's world
/// state machine behind a lock, with the latencies and waits of a live run.
pub struct World {
    state: Mutex<WorldState>,
    cycle_length: Millis,
    live: Option<LiveContext>,
}

impl World {
    pub fn new(fleet: &Fleet, cycle_length: Millis) -> Arc<World> {
        Arc::new(World::build(fleet, cycle_length, None))
    }

    pub fn live(fleet: &Fleet, cycle_length: Millis, live: LiveContext) -> Arc<World> {
        Arc::new(World::build(fleet, cycle_length, Some(live)))
    }

    fn build(fleet: &Fleet, cycle_length: Millis, live: Option<LiveContext>) -> World {
        // Outside a live run no fault is planned: the world only keeps its ledgers.
        let faults = live.as_ref().map_or_else(|| FaultPlan::new(0, Vec::new()), |live| live.faults.clone());
        World { state: Mutex::new(WorldState::new(fleet, faults)), cycle_length, live }
    }

    /// Tags the PSP's provider_refs with `namespace` (a shard's, so that
    /// shards sharing one database never collide); before any charge.
    pub fn namespace_charges(&self, namespace: &str) {
        let mut state = self.state();
        assert!(state.psp.charges_count() == 0, "the namespace is set before the first charge");
        state.psp = crate::world::psp::PspLedger::in_namespace(namespace);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WorldState> {
        self.state.lock().expect("world lock")
    }

    /// The plan phase in effect, for fault scopes (0 outside a live run).
    pub fn phase(&self) -> u16 {
        self.live.as_ref().map_or(0, |live| live.phase.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sets the plan phase in effect.
    pub fn set_phase(&self, phase: u16) {
        if let Some(live) = &self.live {
            live.phase.store(phase, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// When a call reaches the world (the wall clock outside a live run).
    fn at(&self) -> At {
        let now = self.live.as_ref().map_or_else(time::wall_clock_millis, |live| live.recorder.clock.now());
        At { now, phase: self.phase() }
    }

    /// Is the machine free for a new customer (not running, not offline)?
    pub fn machine_idle(&self, index: usize, now: Millis) -> bool {
        self.state().gateway.machine(index as u32).is_idle(now)
    }

    fn record(&self, event: Event) {
        if let Some(live) = &self.live {
            live.recorder.record(event);
        }
    }

    /// Records the fault the world played on a call, what it answered and
    /// the ground truth it saw.
    fn record_served(&self, fired: Option<Fired>, called: Option<Called>, truth: Option<Truth>) {
        served_events(fired, called, truth).for_each(|event| self.record(event));
    }

    /// Plays a boundary's latency on the way back, varied by the call's key.
    async fn travel(&self, key: FaultKey, latency: impl Fn(&LiveContext) -> (Millis, Millis)) {
        let Some(live) = self.live.as_ref() else { return };
        let (low, high) = latency(live);
        let [purchase, call, lane] = key.ids();
        let delay = low + (purchase ^ (call ^ lane << 16).wrapping_mul(0x9E37)) % (high - low + 1);
        live.recorder.clock.sleep(delay / 2).await;
    }

    /// Waits out a stack's timeout (the answer is lost or never comes).
    async fn beyond(&self, timeout: impl Fn(&LiveContext) -> Millis) {
        if let Some(live) = &self.live {
            live.recorder.clock.sleep(timeout(live) * 2 + 1_000).await;
        }
    }

    /// How many cycles the machines' logs hold for `execute_key` on `machine_id`.
    pub fn cycles(&self, machine_id: &str, execute_key: &str) -> Vec<CycleRecord> {
        let state = self.state();
        let Some(index) = state.gateway.index(machine_id) else { return Vec::new() };
        state.gateway.machine(index).cycles(execute_key)
    }

    /// Every captured or refunded charge of a payment.
    pub fn charges(&self, payment_id: Uuid) -> Vec<Charge> {
        self.state().psp.for_payment(payment_id)
    }

    /// A call to the PSP, played: its latency, then a timeout, a 5xx or the ledger's answer.
    async fn psp(self: &Arc<Self>, request: &PspRequest) -> Result<PspAnswer, Response> {
        let served = self.state().psp(self.at(), request);
        self.record_served(served.fired, served.called, served.truth);
        if let (Some(delay), Some(live)) = (served.late, &self.live) {
            // The refund lands later, whatever the stack hears now.
            let (clock, request) = (live.recorder.clock, request.clone());
            let world = Arc::clone(self);
            tokio::spawn(async move {
                clock.sleep(delay).await;
                let truth = world.state().land_refund(&request);
                world.record_served(None, None, truth);
            });
        }
        self.travel(served.key, |live| live.latency.stack_psp).await;
        match served.answer {
            PspAnswer::Timeout => {
                self.beyond(|live| live.psp_timeout).await;
                Err(error(StatusCode::GATEWAY_TIMEOUT, "timeout"))
            }
            PspAnswer::Error => Err(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable")),
            answer => Ok(answer),
        }
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(WorldError { error: code.into() })).into_response()
}

async fn create_charge(
    State(world): State<Arc<World>>,
    body: Result<axum::Json<ChargeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(axum::Json(request)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let owner = (request.purchase.unwrap_or(UNCHARGED), request.condominium);
    let amount = (request.amount_cents, request.idempotency_key);
    let (charge, truth) = world.state().charge(owner, request.payment_id, amount, request.declined);
    // Only posim's terminals name their purchase: ground truth is theirs.
    if request.purchase.is_some() {
        world.record_served(None, None, truth);
    }
    (StatusCode::CREATED, axum::Json(charge)).into_response()
}

async fn get_charge(State(world): State<Arc<World>>, Path(reference): Path<String>) -> Response {
    match world.psp(&PspRequest::GetCharge(reference.into())).await {
        Ok(PspAnswer::Charge(Some(charge))) => axum::Json(charge).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "not_found"),
        Err(faulty) => faulty,
    }
}

async fn list_charges(
    State(world): State<Arc<World>>,
    query: Result<Query<ChargesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let charges = match world.psp(&PspRequest::ListCharges(query.payment_id)).await {
        Ok(PspAnswer::Charges(charges)) => charges,
        Ok(_) => Vec::new(),
        Err(faulty) => return faulty,
    };
    axum::Json(ChargeList { charges }).into_response()
}

async fn refund(State(world): State<Arc<World>>, Path(reference): Path<String>, headers: HeaderMap) -> Response {
    let Some(key) = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "idempotency_key_required");
    };
    let key: Text = key.into();
    let request = PspRequest::Refund { provider_ref: reference.as_str().into(), idempotency_key: key.clone() };
    let outcome = match world.psp(&request).await {
        Ok(PspAnswer::Refund(outcome)) => outcome,
        Ok(_) => RefundOutcome::NotFound,
        Err(faulty) => return faulty,
    };
    match outcome {
        RefundOutcome::Refunded(_) => {
            let refund_id = format!("rf_{key}").into();
            axum::Json(Refund { provider_ref: reference.into(), status: ChargeStatus::Refunded, refund_id })
                .into_response()
        }
        RefundOutcome::AlreadyRefunded => error(StatusCode::CONFLICT, WorldError::ALREADY_REFUNDED),
        RefundOutcome::NotFound => error(StatusCode::NOT_FOUND, "not_found"),
        RefundOutcome::NotCaptured => error(StatusCode::CONFLICT, "not_captured"),
    }
}

async fn command(
    State(world): State<Arc<World>>,
    Path(machine_id): Path<String>,
    body: Result<axum::Json<Command>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // An unknown `action` fails to deserialise: 400 like any bad body.
    let Ok(axum::Json(request)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let command = StartCycleCommand {
        machine_id: machine_id.into(),
        command_id: request.command_id,
        payment_id: request.payment_id,
        execute_key: request.execute_key,
        not_after: request.not_after,
    };
    // The stack's fencing instant is on the wall clock (its database's).
    let served = world.state().send_command(world.at(), &command, time::wall_clock_millis());
    let fault = served.fired.map(|fired| fired.kind);
    world.record_served(served.fired, served.called, served.truth);
    world.travel(served.key, |live| live.latency.stack_iot).await;
    let machine = match served.answer {
        Route::ToMachine(machine) => machine,
        Route::UnknownMachine => return error(StatusCode::NOT_FOUND, "unknown_machine"),
        Route::Expired => return command_reply(CommandResult::Expired, None),
        Route::Late { machine, delay } => {
            tokio::spawn(deliver_late(Arc::clone(&world), machine, command, delay));
            return error(StatusCode::GATEWAY_TIMEOUT, "gateway_timeout");
        }
        Route::Lost => {
            world.beyond(|live| live.iot_timeout).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "timeout");
        }
    };
    let fate = (fault, time::wall_clock_millis());
    let AtMachine { answer, truth, called } =
        world.state().at_machine(machine, &command, fate, (world.at().now, world.cycle_length));
    world.record_served(None, called, truth);
    match answer {
        // The machine started; the stack hears nothing, or a 504.
        GatewayAnswer::NoAnswer => {
            world.beyond(|live| live.iot_timeout).await;
            error(StatusCode::GATEWAY_TIMEOUT, "timeout")
        }
        GatewayAnswer::GatewayTimeout => error(StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
        GatewayAnswer::Started(cycle) => command_reply(CommandResult::Started, Some(cycle)),
        GatewayAnswer::AlreadyStarted(cycle) => command_reply(CommandResult::AlreadyStarted, Some(cycle)),
        GatewayAnswer::Busy => command_reply(CommandResult::Busy, None),
        GatewayAnswer::Offline => command_reply(CommandResult::Offline, None),
        GatewayAnswer::Expired => command_reply(CommandResult::Expired, None),
    }
}

/// A command the gateway answered 504 reaches its machine `delay` later
/// (runbook time), unless its `not_after` has passed by then.
async fn deliver_late(world: Arc<World>, machine: u32, command: StartCycleCommand, delay: Millis) {
    if let Some(live) = &world.live {
        live.recorder.clock.sleep(delay).await;
    }
    let fate = (Some(crate::faults::FaultKind::CommandLate), time::wall_clock_millis());
    let AtMachine { truth, called, .. } =
        world.state().at_machine(machine, &command, fate, (world.at().now, world.cycle_length));
    world.record_served(None, called, truth);
}

/// The gateway's answer with the status the contract gives it.
fn command_reply(result: CommandResult, cycle_id: Option<Text>) -> Response {
    let reply = CommandReply::new(result, cycle_id);
    let status = StatusCode::from_u16(reply.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, axum::Json(reply)).into_response()
}

async fn cycles(
    State(world): State<Arc<World>>,
    Path(machine_id): Path<String>,
    query: Result<Query<CyclesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let served = world.state().find_cycles(world.at(), &machine_id, &query.execute_key);
    world.record_served(served.fired, served.called, served.truth);
    world.travel(served.key, |live| live.latency.stack_iot).await;
    let cycles = match served.answer {
        CyclesAnswer::Cycles(cycles) => cycles,
        CyclesAnswer::UnknownMachine => return error(StatusCode::NOT_FOUND, "unknown_machine"),
        CyclesAnswer::Offline => return error(StatusCode::SERVICE_UNAVAILABLE, "offline"),
        CyclesAnswer::NoAnswer => {
            world.beyond(|live| live.iot_timeout).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "timeout");
        }
    };
    axum::Json(CycleList { cycles }).into_response()
}

/// The PSP's and the gateway's routes.
pub fn router(world: Arc<World>) -> Router {
    Router::new()
        .route("/v1/charges", post(create_charge).get(list_charges))
        .route("/v1/charges/{provider_ref}", get(get_charge))
        .route("/v1/charges/{provider_ref}/refund", post(refund))
        .route("/v1/machines/{machine_id}/commands", post(command))
        .route("/v1/machines/{machine_id}/cycles", get(cycles))
        .with_state(world)
}

/// Serves the world on a loopback port (0: a free one); returns its base URL.
pub async fn serve(world: Arc<World>, port: u16) -> std::io::Result<String> {
    let port = serve_on(world, std::net::Ipv4Addr::LOCALHOST, port, "").await?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// A path that only the run's own stack is told: the world answers 404
/// to anything outside it, so another local user or container that finds
/// the port cannot write the run's ground truth.
pub fn run_path() -> String {
    format!("/run-{}", Uuid::new_v4().simple())
}

/// Serves the world under `path` (`""` or [`run_path`]) on `ip`; returns the port.
pub async fn serve_on(world: Arc<World>, ip: std::net::Ipv4Addr, port: u16, path: &str) -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind((ip, port)).await?;
    let port = listener.local_addr()?.port();
    let router = match path {
        "" => router(world),
        path => Router::new().nest(path, router(world)),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(port)
}
