//! The reference stack as an HTTP service (`posim stack serve`): axum in
//! front of the same sans-IO core the simulator runs. Each request is driven
//! effect by effect — store operations on PostgreSQL, PSP and IoT calls over
//! reqwest — and every answer is the contract's JSON. Bad input gets a 4xx
//! with a JSON error, never a 500 and never a crash.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use super::core::{Effect, IdSource, Input, IotCall, IotOutcome, PspCall, PspOutcome};
use super::pg::PgStore;
use super::{BugSet, Stack, StackBug};
use crate::contract::canary::ConfigError;
use crate::contract::wire::{encode, reply_to_json};
use crate::contract::{Charge, ChargeStatus, CycleRecord, DeployConfig, ErrorCode, Reply, Request, Text};
use crate::time;

/// The largest body the stack reads (CONTRACT.md: over 64 KiB is a 413).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything `posim stack serve` reads from its environment.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub port: u16,
    pub database_url: String,
    pub psp_base_url: String,
    pub iot_gateway_url: String,
    pub deploy: DeployConfig,
    pub bugs: BugSet,
    pub psp_timeout: Duration,
}

impl ServeConfig {
    /// Reads the contract's variables; an invalid or missing one stops the
    /// stack with a message that names it (a payments stack fails closed).
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let refuse = |variable: &'static str, value: String, reason: &str| ConfigError {
            variable,
            value,
            reason: reason.to_string(),
        };
        let required = |variable: &'static str, schemes: &[&str]| match lookup(variable) {
            Some(value) if schemes.iter().any(|scheme| value.starts_with(scheme)) => {
                Ok(value.trim_end_matches('/').to_string())
            }
            Some(value) => {
                Err(refuse(variable, value, &format!("expected a URL starting with {}", schemes.join(" or "))))
            }
            None => Err(refuse(variable, String::new(), "required")),
        };
        let port = match lookup("PORT") {
            None => 8080,
            Some(text) => {
                text.trim().parse::<u16>().map_err(|_| refuse("PORT", text.clone(), "expected a TCP port"))?
            }
        };
        let bugs = match lookup("POSIM_STACK_BUG") {
            None => BugSet::default(),
            Some(text) => {
                let names = text.split(',').map(str::trim).filter(|name| !name.is_empty());
                let bugs = names.map(str::parse::<StackBug>).collect::<Result<Vec<_>, _>>();
                BugSet::new(&bugs.map_err(|reason| refuse("POSIM_STACK_BUG", text.clone(), &reason))?)
            }
        };
        let psp_timeout = match lookup("PAYMENTS_PSP_TIMEOUT_MS") {
            None => Duration::from_secs(3),
            Some(text) => match text.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => return Err(refuse("PAYMENTS_PSP_TIMEOUT_MS", text, "expected a positive whole number")),
            },
        };
        Ok(ServeConfig {
            port,
            database_url: required("DATABASE_URL", &["postgres://", "postgresql://"])?,
            psp_base_url: required("PSP_BASE_URL", &["http://"])?,
            iot_gateway_url: required("IOT_GATEWAY_URL", &["http://"])?,
            deploy: DeployConfig::from_env(lookup)?,
            bugs,
            psp_timeout,
        })
    }
}

/// What every request handler shares.
pub struct AppState {
    stack: Stack,
    store: PgStore,
    http: reqwest::Client,
    config: ServeConfig,
}

struct RandomIds;

impl IdSource for RandomIds {
    fn next_uuid(&mut self) -> Uuid {
        Uuid::new_v4()
    }
}

impl AppState {
    /// Connects to the database and applies the migrations.
    pub async fn connect(config: ServeConfig) -> anyhow::Result<Arc<AppState>> {
        let mut pool_config = deadpool_postgres::Config::new();
        pool_config.url = Some(config.database_url.clone());
        let pool = pool_config
            .create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)
            .map_err(|error| anyhow::anyhow!("DATABASE_URL: {error}"))?;
        let store = PgStore::new(pool);
        store.migrate().await.map_err(|error| anyhow::anyhow!("DATABASE_URL: cannot apply the migrations: {error}"))?;
        if config.bugs.has(StackBug::StateLostOnRedeploy) {
            // The bug: a stack that "keeps its state in memory" starts empty.
            store.forget_everything().await.map_err(|error| anyhow::anyhow!("DATABASE_URL: {error}"))?;
        }
        let stack = Stack::new(config.deploy.canary.clone(), config.deploy.settings, config.bugs);
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        Ok(Arc::new(AppState { stack, store, http, config }))
    }

    /// Drives one request through the core to its reply.
    pub async fn handle(&self, request: Request) -> Reply {
        let mut ids = RandomIds;
        let (mut operation, mut effect) = self.stack.start(request, time::wall_clock_millis(), &mut ids);
        loop {
            let input = match effect {
                Effect::Reply(reply) => return reply,
                Effect::Store(op) => match self.store.apply(op, time::wall_clock_millis()).await {
                    Ok(result) => Input::Store(result),
                    Err(error) => return Reply::error(ErrorCode::Unavailable, error.to_string()),
                },
                Effect::Psp(call) => Input::Psp(self.psp(call).await),
                Effect::Iot(call) => Input::Iot(self.iot(call).await),
            };
            effect = self.stack.resume(&mut operation, input, time::wall_clock_millis(), &mut ids);
        }
    }

    async fn psp(&self, call: PspCall) -> PspOutcome {
        let base = &self.config.psp_base_url;
        let request = match &call {
            PspCall::GetCharge(reference) => self.http.get(format!("{base}/v1/charges/{}", encode(reference))),
            PspCall::ChargesForPayment(payment) => self.http.get(format!("{base}/v1/charges?payment_id={payment}")),
            PspCall::Refund { provider_ref, idempotency_key } => self
                .http
                .post(format!("{base}/v1/charges/{}/refund", encode(provider_ref)))
                .header("Idempotency-Key", &**idempotency_key),
        };
        let Ok(response) = request.timeout(self.config.psp_timeout).send().await else {
            return PspOutcome::Unavailable;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match (call, status) {
            (PspCall::GetCharge(_), 200) => {
                charge(&body).map_or(PspOutcome::Unavailable, |c| PspOutcome::Charge(Some(c)))
            }
            (PspCall::GetCharge(_), 404) => PspOutcome::Charge(None),
            (PspCall::ChargesForPayment(_), 200) => {
                let list = body.get("charges").and_then(Value::as_array).cloned().unwrap_or_default();
                PspOutcome::Charges(list.iter().filter_map(charge).collect())
            }
            (PspCall::Refund { .. }, 200) => PspOutcome::Refunded,
            (PspCall::Refund { .. }, 409) => PspOutcome::AlreadyRefunded,
            _ => PspOutcome::Unavailable,
        }
    }

    async fn iot(&self, call: IotCall) -> IotOutcome {
        let base = &self.config.iot_gateway_url;
        let timeout = Duration::from_millis(self.config.deploy.settings.iot_timeout);
        let request = match &call {
            IotCall::StartCycle(command) => {
                self.http.post(format!("{base}/v1/machines/{}/commands", encode(&command.machine_id))).json(&json!({
                    "command_id": command.command_id,
                    "payment_id": command.payment_id,
                    "execute_key": &*command.execute_key,
                    "action": "start_cycle",
                }))
            }
            IotCall::FindCycles { machine_id, execute_key } => self.http.get(format!(
                "{base}/v1/machines/{}/cycles?execute_key={}",
                encode(machine_id),
                encode(execute_key)
            )),
        };
        let Ok(response) = request.timeout(timeout).send().await else { return IotOutcome::NoAnswer };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let cycle_id = || body.get("cycle_id").and_then(Value::as_str).map(Text::from);
        match (call, status, body.get("result").and_then(Value::as_str)) {
            (IotCall::StartCycle(_), 200, Some("started")) => {
                cycle_id().map_or(IotOutcome::NoAnswer, IotOutcome::Started)
            }
            (IotCall::StartCycle(_), 200, Some("already_started")) => {
                cycle_id().map_or(IotOutcome::NoAnswer, IotOutcome::AlreadyStarted)
            }
            (IotCall::StartCycle(_), 409, _) => IotOutcome::Busy,
            (IotCall::StartCycle(_), 503, _) => IotOutcome::Offline,
            (IotCall::StartCycle(_), 504, _) => IotOutcome::GatewayTimeout,
            (IotCall::FindCycles { .. }, 200, _) => {
                let list = body.get("cycles").and_then(Value::as_array).cloned().unwrap_or_default();
                IotOutcome::Cycles(list.iter().filter_map(cycle).collect())
            }
            _ => IotOutcome::NoAnswer,
        }
    }
}

fn charge(body: &Value) -> Option<Charge> {
    let status = match body.get("status")?.as_str()? {
        "captured" => ChargeStatus::Captured,
        "declined" => ChargeStatus::Declined,
        "refunded" => ChargeStatus::Refunded,
        _ => return None,
    };
    Some(Charge {
        provider_ref: body.get("provider_ref")?.as_str()?.into(),
        payment_id: Uuid::try_parse(body.get("payment_id")?.as_str()?).ok()?,
        amount_cents: body.get("amount_cents")?.as_i64()?,
        status,
    })
}

fn cycle(body: &Value) -> Option<CycleRecord> {
    Some(CycleRecord {
        cycle_id: body.get("cycle_id")?.as_str()?.into(),
        execute_key: body.get("execute_key")?.as_str()?.into(),
        payment_id: Uuid::try_parse(body.get("payment_id")?.as_str()?).ok()?,
        started_at: body
            .get("started_at")
            .and_then(Value::as_str)
            .and_then(|t| time::parse_instant_millis(t).ok())
            .unwrap_or(0),
    })
}

fn respond(reply: &Reply) -> Response {
    let (status, body) = reply_to_json(reply);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, axum::Json(body)).into_response()
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Response {
    respond(&Reply::error(code, message))
}

/// Reads a JSON body of at most [`BODY_LIMIT`] bytes into `T`.
async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes: Bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| refuse(ErrorCode::PayloadTooLarge, format!("the body is over {} KiB", BODY_LIMIT / 1024)))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| refuse(ErrorCode::InvalidRequest, format!("invalid JSON body: {error}")))
}

async fn handle_json<T: DeserializeOwned>(state: Arc<AppState>, body: Body, request: fn(T) -> Request) -> Response {
    match json_body::<T>(body).await {
        Ok(parsed) => respond(&state.handle(request(parsed)).await),
        Err(response) => response,
    }
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    provider_ref: Option<String>,
    idempotency_key: Option<String>,
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let canary = &state.config.deploy.canary;
    let body = json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "canary": canary });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn audit(
    State(state): State<Arc<AppState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return refuse(ErrorCode::InvalidRequest, "bad query string") };
    let request = match (query.provider_ref, query.idempotency_key) {
        (Some(reference), None) => Request::AuditByProviderRef(reference.into()),
        (None, Some(key)) => Request::AuditByIdempotencyKey(key.into()),
        _ => return refuse(ErrorCode::InvalidRequest, "give exactly one of provider_ref or idempotency_key"),
    };
    respond(&state.handle(request).await)
}

/// The contract's routes; anything else is a 404 with a JSON error.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/api/payments/authorize",
            post(|State(s): State<Arc<AppState>>, body: Body| handle_json(s, body, Request::Authorize)),
        )
        .route(
            "/api/payments/confirm",
            post(|State(s): State<Arc<AppState>>, body: Body| handle_json(s, body, Request::Confirm)),
        )
        .route(
            "/api/payments/execute-cycle",
            post(|State(s): State<Arc<AppState>>, body: Body| handle_json(s, body, Request::ExecuteCycle)),
        )
        .route(
            "/api/payments/compensation/alert",
            post(|State(s): State<Arc<AppState>>| async move { respond(&s.handle(Request::CompensationSweep).await) }),
        )
        .route(
            "/api/payments/{payment_id}",
            get(|State(s): State<Arc<AppState>>, Path(id): Path<String>| async move {
                respond(&s.handle(Request::GetPayment(id)).await)
            }),
        )
        .route("/api/payments", get(audit))
        .fallback(|| async { refuse(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async { refuse(ErrorCode::NotFound, "no such route for this method") })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// `posim stack serve`: connect, migrate, listen on `PORT`, stop on SIGTERM or Ctrl-C.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let port = config.port;
    let state = AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|error| anyhow::anyhow!("PORT={port}: {error}"))?;
    eprintln!("posim stack: listening on port {port}, canary {}", state.config.deploy.canary.summary());
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
