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
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::contract::{Charge, ChargeStatus, CycleRecord, StartCycleCommand, Text};
use crate::time::{self, Millis};
use crate::world::machines::CommandAnswer;
use crate::world::psp::RefundOutcome;
use crate::world::{Fleet, MachineState, PspLedger};

/// The world's ground truth, shared by the handlers.
pub struct World {
    psp: Mutex<PspLedger>,
    machines: Mutex<Vec<MachineState>>,
    machine_index: HashMap<String, usize>,
    cycle_length: Millis,
}

impl World {
    pub fn new(fleet: &Fleet, cycle_length: Millis) -> Arc<World> {
        let machines =
            fleet.machines.iter().enumerate().map(|(i, m)| MachineState::new(i as u32, m.firmware)).collect();
        let machine_index = fleet.machines.iter().enumerate().map(|(i, m)| (m.id.to_string(), i)).collect();
        Arc::new(World {
            psp: Mutex::new(PspLedger::default()),
            machines: Mutex::new(machines),
            machine_index,
            cycle_length,
        })
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

fn charge_json(charge: &Charge) -> Value {
    let status = match charge.status {
        ChargeStatus::Captured => "captured",
        ChargeStatus::Declined => "declined",
        ChargeStatus::Refunded => "refunded",
    };
    json!({ "provider_ref": &*charge.provider_ref, "payment_id": charge.payment_id, "amount_cents": charge.amount_cents, "status": status })
}

fn cycle_json(cycle: &CycleRecord) -> Value {
    json!({
        "cycle_id": &*cycle.cycle_id,
        "execute_key": &*cycle.execute_key,
        "payment_id": cycle.payment_id,
        "started_at": time::rfc3339(0, cycle.started_at),
    })
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({ "error": code }))).into_response()
}

#[derive(Deserialize)]
struct ChargeRequest {
    payment_id: Uuid,
    amount_cents: i64,
    idempotency_key: String,
}

async fn create_charge(
    State(world): State<Arc<World>>,
    body: Result<axum::Json<ChargeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(axum::Json(request)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let (charge, _) = world.psp.lock().expect("ledger lock").charge(
        request.payment_id,
        request.amount_cents,
        request.idempotency_key.into(),
        false,
    );
    (StatusCode::CREATED, axum::Json(charge_json(&charge))).into_response()
}

async fn get_charge(State(world): State<Arc<World>>, Path(reference): Path<String>) -> Response {
    match world.psp.lock().expect("ledger lock").get(&reference) {
        Some(charge) => axum::Json(charge_json(&charge)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

#[derive(Deserialize)]
struct ChargesQuery {
    payment_id: Uuid,
}

async fn list_charges(
    State(world): State<Arc<World>>,
    query: Result<Query<ChargesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let charges: Vec<Value> = world.charges(query.payment_id).iter().map(charge_json).collect();
    axum::Json(json!({ "charges": charges })).into_response()
}

async fn refund(State(world): State<Arc<World>>, Path(reference): Path<String>, headers: HeaderMap) -> Response {
    let Some(key) = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "idempotency_key_required");
    };
    let key: Text = key.into();
    match world.psp.lock().expect("ledger lock").refund(&reference, &key) {
        RefundOutcome::Refunded(_) => {
            axum::Json(json!({ "provider_ref": reference, "status": "refunded", "refund_id": format!("rf_{key}") }))
                .into_response()
        }
        RefundOutcome::AlreadyRefunded => error(StatusCode::CONFLICT, "already_refunded"),
        RefundOutcome::NotFound => error(StatusCode::NOT_FOUND, "not_found"),
        RefundOutcome::NotCaptured => error(StatusCode::CONFLICT, "not_captured"),
    }
}

#[derive(Deserialize)]
struct CommandRequest {
    command_id: Uuid,
    payment_id: Uuid,
    execute_key: String,
    action: String,
}

async fn command(
    State(world): State<Arc<World>>,
    Path(machine_id): Path<String>,
    body: Result<axum::Json<CommandRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(axum::Json(request)) = body else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let Some(&index) = world.machine_index.get(&machine_id) else {
        return error(StatusCode::NOT_FOUND, "unknown_machine");
    };
    if request.action != "start_cycle" {
        return error(StatusCode::BAD_REQUEST, "unknown_action");
    }
    let command = StartCycleCommand {
        machine_id: machine_id.into(),
        command_id: request.command_id,
        payment_id: request.payment_id,
        execute_key: request.execute_key.into(),
    };
    let answer = world.machines.lock().expect("machines lock")[index].command(
        &command,
        time::wall_clock_millis(),
        world.cycle_length,
    );
    match answer {
        CommandAnswer::Started(cycle) => {
            axum::Json(json!({ "result": "started", "cycle_id": &*cycle })).into_response()
        }
        CommandAnswer::AlreadyStarted(cycle) => {
            axum::Json(json!({ "result": "already_started", "cycle_id": &*cycle })).into_response()
        }
        CommandAnswer::Busy => (StatusCode::CONFLICT, axum::Json(json!({ "result": "busy" }))).into_response(),
        CommandAnswer::Offline => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "result": "offline" }))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct CyclesQuery {
    execute_key: String,
}

async fn cycles(
    State(world): State<Arc<World>>,
    Path(machine_id): Path<String>,
    query: Result<Query<CyclesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    if !world.machine_index.contains_key(&machine_id) {
        return error(StatusCode::NOT_FOUND, "unknown_machine");
    }
    let cycles: Vec<Value> = world.cycles(&machine_id, &query.execute_key).iter().map(cycle_json).collect();
    axum::Json(json!({ "cycles": cycles })).into_response()
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

/// Serves the world on a free loopback port; returns its base URL.
pub async fn serve(world: Arc<World>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(world)).await;
    });
    Ok(format!("http://{address}"))
}
