//! The world posim serves around a live stack (CONTRACT.md, "The world's
//! API"): the PSP's charges and refunds and the IoT gateway in front of the
//! machines, with the same ledgers and firmware as the simulator. One
//! listener serves both (their paths do not collide), so `PSP_BASE_URL` and
//! `IOT_GATEWAY_URL` may name the same address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use uuid::Uuid;

use super::clock::Recorder;
use crate::contract::world_api::{
    ChargeList, ChargeRequest, ChargesQuery, Command, CommandReply, CommandResult, CycleList, CyclesQuery, Refund,
    WorldError,
};
use crate::contract::{Charge, ChargeStatus, CycleRecord, StartCycleCommand, Text};
use crate::faults::{Boundary, Crossing, FaultKind, FaultPlan};
use crate::history::Event;
use crate::scenario::Latency;
use crate::time::{self, Millis};
use crate::world::machines::CommandAnswer;
use crate::world::psp::RefundOutcome;
use crate::world::{Fleet, MachineState, PspLedger};

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

/// The world's ground truth, shared by the handlers.
pub struct World {
    psp: Mutex<PspLedger>,
    machines: Mutex<Vec<MachineState>>,
    machine_index: HashMap<String, usize>,
    cycle_length: Millis,
    live: Option<LiveContext>,
    /// payment → (purchase, condominium, calls so far): stable ids for fault rolls.
    payments: Mutex<HashMap<Uuid, (u32, u32, u64)>>,
    /// execute_key → payment, learnt from the commands (a cycles query names only the key).
    keys: Mutex<HashMap<String, Uuid>>,
}

impl World {
    pub fn new(fleet: &Fleet, cycle_length: Millis) -> Arc<World> {
        Arc::new(World::build(fleet, cycle_length, None))
    }

    pub fn live(fleet: &Fleet, cycle_length: Millis, live: LiveContext) -> Arc<World> {
        Arc::new(World::build(fleet, cycle_length, Some(live)))
    }

    fn build(fleet: &Fleet, cycle_length: Millis, live: Option<LiveContext>) -> World {
        let machines =
            fleet.machines.iter().enumerate().map(|(i, m)| MachineState::new(i as u32, m.firmware)).collect();
        let machine_index = fleet.machines.iter().enumerate().map(|(i, m)| (m.id.to_string(), i)).collect();
        World {
            psp: Mutex::new(PspLedger::default()),
            machines: Mutex::new(machines),
            machine_index,
            cycle_length,
            live,
            payments: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
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

    /// Is the machine free for a new customer (not running, not offline)?
    pub fn machine_idle(&self, index: usize, now: Millis) -> bool {
        self.machines.lock().expect("machines lock")[index].is_idle(now)
    }

    fn record(&self, event: Event) {
        if let Some(live) = &self.live {
            live.recorder.record(event);
        }
    }

    /// Plays a boundary: a latency, then maybe a fault, keyed by the
    /// payment's purchase and how many calls it has made (stable ids).
    async fn boundary(
        &self,
        boundary: Boundary,
        payment: Uuid,
        latency: (Millis, Millis),
    ) -> Option<(FaultKind, Millis)> {
        let live = self.live.as_ref()?;
        let (purchase, condominium, call) = {
            let mut payments = self.payments.lock().expect("payments lock");
            let entry = payments.entry(payment).or_insert((u32::MAX, u32::MAX, 0));
            entry.2 += 1;
            *entry
        };
        let crossing = Crossing {
            now: live.recorder.clock.now(),
            phase: live.phase.load(std::sync::atomic::Ordering::Relaxed),
            condominium: (condominium != u32::MAX).then_some(condominium),
            endpoint: None,
        };
        let roll = live.faults.roll(boundary, &crossing, [u64::from(purchase), call, boundary as u64]);
        let spread = latency.1 - latency.0 + 1;
        let delay = latency.0 + (u64::from(purchase) ^ call.wrapping_mul(0x9E37)) % spread;
        live.recorder.clock.sleep(delay / 2).await;
        let (index, spec) = roll?;
        live.recorder.record(Event::Fault { fault: index, kind: spec.kind, subject: u64::from(purchase) });
        Some((spec.kind, spec.duration))
    }

    /// Waits out a stack's timeout (the answer is lost or never comes).
    async fn beyond(&self, timeout: Millis) {
        if let Some(live) = &self.live {
            live.recorder.clock.sleep(timeout * 2 + 1_000).await;
        }
    }

    /// How many cycles the machines' logs hold for `execute_key` on `machine_id`.
    pub fn cycles(&self, machine_id: &str, execute_key: &str) -> Vec<CycleRecord> {
        let Some(&index) = self.machine_index.get(machine_id) else { return Vec::new() };
        self.machines.lock().expect("machines lock")[index].cycles(execute_key)
    }

    /// Every captured or refunded charge of a payment.
    pub fn charges(&self, payment_id: Uuid) -> Vec<Charge> {
        self.psp.lock().expect("ledger lock").for_payment(payment_id)
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
    let key = request.idempotency_key;
    let (charge, new) =
        world.psp.lock().expect("ledger lock").charge(request.payment_id, request.amount_cents, key, request.declined);
    if let (Some(purchase), true) = (request.purchase, new) {
        let condominium = request.condominium.unwrap_or(u32::MAX);
        world.payments.lock().expect("payments lock").insert(request.payment_id, (purchase, condominium, 0));
        let captured = charge.status == ChargeStatus::Captured;
        let provider_ref = charge.provider_ref.clone();
        world.record(Event::Charged { purchase, payment: request.payment_id, provider_ref, captured });
    }
    (StatusCode::CREATED, axum::Json(charge)).into_response()
}

/// The stack → PSP boundary: latency, then a timeout or a 5xx if the plan says so.
async fn psp_boundary(world: &World, payment: Uuid) -> Option<Response> {
    let live = world.live.as_ref()?;
    match world.boundary(Boundary::StackToPsp, payment, live.latency.stack_psp).await {
        Some((FaultKind::PspTimeout, _)) => {
            world.beyond(live.psp_timeout).await;
            Some(error(StatusCode::GATEWAY_TIMEOUT, "timeout"))
        }
        Some(_) => Some(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable")),
        None => None,
    }
}

async fn get_charge(State(world): State<Arc<World>>, Path(reference): Path<String>) -> Response {
    let payment = world.psp.lock().expect("ledger lock").get(&reference).map(|charge| charge.payment_id);
    if let Some(faulty) = psp_boundary(&world, payment.unwrap_or_default()).await {
        return faulty;
    }
    match world.psp.lock().expect("ledger lock").get(&reference) {
        Some(charge) => axum::Json(charge).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn list_charges(
    State(world): State<Arc<World>>,
    query: Result<Query<ChargesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    if let Some(faulty) = psp_boundary(&world, query.payment_id).await {
        return faulty;
    }
    axum::Json(ChargeList { charges: world.charges(query.payment_id) }).into_response()
}

async fn refund(State(world): State<Arc<World>>, Path(reference): Path<String>, headers: HeaderMap) -> Response {
    let Some(key) = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "idempotency_key_required");
    };
    let key: Text = key.into();
    let payment = world.psp.lock().expect("ledger lock").get(&reference).map(|charge| charge.payment_id);
    if let Some(faulty) = psp_boundary(&world, payment.unwrap_or_default()).await {
        return faulty;
    }
    let outcome = world.psp.lock().expect("ledger lock").refund(&reference, &key);
    match outcome {
        RefundOutcome::Refunded(new) => {
            if new {
                world.record(Event::Refunded {
                    payment: payment.unwrap_or_default(),
                    provider_ref: reference.clone().into(),
                });
            }
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
    let Ok(axum::Json(request)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let Some(&index) = world.machine_index.get(&machine_id) else {
        return error(StatusCode::NOT_FOUND, "unknown_machine");
    };
    let command = StartCycleCommand {
        machine_id: machine_id.into(),
        command_id: request.command_id,
        payment_id: request.payment_id,
        execute_key: request.execute_key,
    };
    world.keys.lock().expect("keys lock").insert(command.execute_key.to_string(), command.payment_id);
    let live = world.live.as_ref();
    let fault = match live {
        Some(live) => world.boundary(Boundary::StackToIot, request.payment_id, live.latency.stack_iot).await,
        None => None,
    };
    let now = live.map_or_else(time::wall_clock_millis, |live| live.recorder.clock.now());
    let timeout = live.map_or(0, |live| live.iot_timeout);
    if let Some((FaultKind::IotCommandLost, _)) = fault {
        world.beyond(timeout).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "timeout");
    }
    let answer = {
        let mut machines = world.machines.lock().expect("machines lock");
        if let Some((FaultKind::MachineOffline, duration)) = fault {
            machines[index].go_offline(now + duration);
        }
        machines[index].command(&command, now, world.cycle_length)
    };
    if let CommandAnswer::Started(cycle) = &answer {
        let (payment, execute_key) = (command.payment_id, command.execute_key.clone());
        world.record(Event::CycleStarted { machine: index as u32, payment, execute_key, cycle: cycle.clone() });
    }
    match fault {
        // The machine started; the stack hears nothing, or a 504.
        Some((FaultKind::IotAckLost, _)) => {
            world.beyond(timeout).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "timeout");
        }
        Some((FaultKind::Gateway504, _)) => return error(StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
        _ => {}
    }
    let reply = match answer {
        CommandAnswer::Started(cycle) => CommandReply::new(CommandResult::Started, Some(cycle)),
        CommandAnswer::AlreadyStarted(cycle) => CommandReply::new(CommandResult::AlreadyStarted, Some(cycle)),
        CommandAnswer::Busy => CommandReply::new(CommandResult::Busy, None),
        CommandAnswer::Offline => CommandReply::new(CommandResult::Offline, None),
    };
    let status = StatusCode::from_u16(reply.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, axum::Json(reply)).into_response()
}

async fn cycles(
    State(world): State<Arc<World>>,
    Path(machine_id): Path<String>,
    query: Result<Query<CyclesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let Some(&index) = world.machine_index.get(&machine_id) else {
        return error(StatusCode::NOT_FOUND, "unknown_machine");
    };
    if let Some(live) = &world.live {
        let payment = world.keys.lock().expect("keys lock").get(&query.execute_key).copied().unwrap_or_default();
        if world.boundary(Boundary::StackToIot, payment, live.latency.stack_iot).await.is_some() {
            world.beyond(live.iot_timeout).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "timeout");
        }
        let now = live.recorder.clock.now();
        if !world.machines.lock().expect("machines lock")[index].is_reachable(now) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "offline");
        }
    }
    axum::Json(CycleList { cycles: world.cycles(&machine_id, &query.execute_key) }).into_response()
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
    let port = serve_on(world, std::net::Ipv4Addr::LOCALHOST, port).await?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// Serves the world on `ip` (all interfaces when containers must reach it); returns the port.
pub async fn serve_on(world: Arc<World>, ip: std::net::Ipv4Addr, port: u16) -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind((ip, port)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(world)).await;
    });
    Ok(port)
}
