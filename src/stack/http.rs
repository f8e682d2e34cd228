//! The reference stack as an HTTP service (`posim stack serve`): axum in
//! front of the same sans-IO core the simulator runs. Each request is driven
//! effect by effect — store operations on PostgreSQL, PSP and IoT calls over
//! reqwest — and every answer is the contract's JSON. Bad input gets a 4xx
//! with a JSON error, never a 500 and never a crash.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::core::{Effect, IdSource, Input, IotCall, IotOutcome, PspCall, PspOutcome};
use super::pg::PgStore;
use super::{BugSet, Stack, StackBug};
use crate::contract::bodies::{AuditQuery, Health};
use crate::contract::canary::{ConfigError, PSP_TIMEOUT_MS_MAX, PSP_TIMEOUT_VAR, parse_bounded};
use crate::contract::wire::{encode, reply_to_json};
use crate::contract::world_api::{
    ChargeList, Command, CommandAction, CommandReply, CommandResult, CycleList, WorldError,
};
use crate::contract::{Charge, DeployConfig, ErrorCode, Reply, Request};
use crate::time;

/// The largest body the stack reads (CONTRACT.md: over 64 KiB is a 413).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything `posim stack serve` reads from its environment.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub port: u16,
    /// Where to listen: loopback unless `BIND_ADDRESS` says otherwise (a
    /// container must listen on all of its own interfaces to be published).
    pub bind: std::net::IpAddr,
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
        // Something must follow the scheme: `postgres://` alone is no URL.
        let required = |variable: &'static str, schemes: &[&str]| match lookup(variable) {
            Some(value) => {
                let url = value.trim_end_matches('/');
                match schemes.iter().any(|scheme| url.len() > scheme.len() && url.starts_with(scheme)) {
                    true => Ok(url.to_string()),
                    false => {
                        Err(refuse(variable, value, &format!("expected a URL starting with {}", schemes.join(" or "))))
                    }
                }
            }
            None => Err(refuse(variable, String::new(), "required")),
        };
        let port = match lookup("PORT") {
            None => 8080,
            Some(text) => {
                text.trim().parse::<u16>().map_err(|_| refuse("PORT", text.clone(), "expected a TCP port"))?
            }
        };
        let bind = match lookup("BIND_ADDRESS") {
            None => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| refuse("BIND_ADDRESS", text.clone(), "expected an IP address, e.g. 127.0.0.1"))?,
        };
        let bugs = match lookup("POSIM_STACK_BUG") {
            None => BugSet::default(),
            Some(text) => {
                let names = text.split(',').map(str::trim).filter(|name| !name.is_empty());
                let bugs = names.map(str::parse::<StackBug>).collect::<Result<Vec<_>, _>>();
                BugSet::new(&bugs.map_err(|reason| refuse("POSIM_STACK_BUG", text.clone(), &reason))?)
            }
        };
        let psp_timeout = parse_bounded(PSP_TIMEOUT_VAR, lookup(PSP_TIMEOUT_VAR), PSP_TIMEOUT_MS_MAX)?
            .map_or(Duration::from_secs(3), Duration::from_millis);
        // A base URL without a host (`http://`) would fail every call instead of the start-up.
        let base_url = |variable: &'static str| {
            let url = required(variable, &["http://"])?;
            match reqwest::Url::parse(&url) {
                Ok(parsed) if parsed.host_str().is_some_and(|host| !host.is_empty()) => Ok(url),
                _ => Err(refuse(variable, url, "expected an http:// URL with a host")),
            }
        };
        Ok(ServeConfig {
            port,
            bind,
            database_url: required("DATABASE_URL", &["postgres://", "postgresql://"])?,
            psp_base_url: base_url("PSP_BASE_URL")?,
            iot_gateway_url: base_url("IOT_GATEWAY_URL")?,
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
        // The world is plain HTTP: no certificate roots. Loading the
        // system's would fail in the stack's image, which has none (TLS is
        // compiled in for goose's sake).
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).tls_certs_only([]).build()?;
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
        let body = response.bytes().await.unwrap_or_default();
        // An answer that breaks the contract is no answer: the stack must not
        // read "no charge" into a garbled list.
        let outcome = match (call, status) {
            (PspCall::GetCharge(_), 200) => read::<Charge>(&body).map(|charge| PspOutcome::Charge(Some(charge))),
            (PspCall::GetCharge(_), 404) => Some(PspOutcome::Charge(None)),
            (PspCall::ChargesForPayment(_), 200) => {
                read::<ChargeList>(&body).map(|list| PspOutcome::Charges(list.charges))
            }
            (PspCall::Refund { .. }, 200) => Some(PspOutcome::Refunded),
            (PspCall::Refund { .. }, 409) => refund_conflict(&body),
            _ => None,
        };
        outcome.unwrap_or(PspOutcome::Unavailable)
    }

    async fn iot(&self, call: IotCall) -> IotOutcome {
        let base = &self.config.iot_gateway_url;
        let timeout = Duration::from_millis(self.config.deploy.settings.iot_timeout);
        let request = match &call {
            IotCall::StartCycle(command) => {
                self.http.post(format!("{base}/v1/machines/{}/commands", encode(&command.machine_id))).json(&Command {
                    command_id: command.command_id,
                    payment_id: command.payment_id,
                    execute_key: command.execute_key.clone(),
                    action: CommandAction::StartCycle,
                    not_after: command.not_after,
                })
            }
            IotCall::FindCycles { machine_id, execute_key } => self.http.get(format!(
                "{base}/v1/machines/{}/cycles?execute_key={}",
                encode(machine_id),
                encode(execute_key)
            )),
        };
        let Ok(response) = request.timeout(timeout).send().await else { return IotOutcome::NoAnswer };
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let outcome = match (call, status) {
            (IotCall::StartCycle(_), 200) => read::<CommandReply>(&body).and_then(started),
            (IotCall::StartCycle(_), 409) => Some(IotOutcome::Busy),
            (IotCall::StartCycle(_), 410) => Some(IotOutcome::Expired),
            (IotCall::StartCycle(_), 503) => Some(IotOutcome::Offline),
            (IotCall::StartCycle(_), 504) => Some(IotOutcome::GatewayTimeout),
            (IotCall::FindCycles { .. }, 200) => read::<CycleList>(&body).map(|list| IotOutcome::Cycles(list.cycles)),
            _ => None,
        };
        outcome.unwrap_or(IotOutcome::NoAnswer)
    }
}

/// A 409 to a refund: only `already_refunded` means the money went back;
/// any other conflict (`not_captured`, an unknown code) is no refund, and the
/// payment stays for the next sweep.
fn refund_conflict(body: &[u8]) -> Option<PspOutcome> {
    let error = read::<WorldError>(body)?;
    (&*error.error == WorldError::ALREADY_REFUNDED).then_some(PspOutcome::AlreadyRefunded)
}

/// A 200 to a command: the machine started, now or before (a dedupe firmware).
fn started(reply: CommandReply) -> Option<IotOutcome> {
    match (reply.result, reply.cycle_id) {
        (CommandResult::Started, Some(cycle)) => Some(IotOutcome::Started(cycle)),
        (CommandResult::AlreadyStarted, Some(cycle)) => Some(IotOutcome::AlreadyStarted(cycle)),
        _ => None,
    }
}

/// A body of the world's API, or nothing when it breaks the contract.
fn read<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
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

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let canary = &state.config.deploy.canary;
    let body = Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into(), canary: canary.clone() };
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn audit(
    State(state): State<Arc<AppState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return refuse(ErrorCode::InvalidRequest, "bad query string") };
    let request = match (query.provider_ref, query.idempotency_key) {
        (Some(reference), None) => Request::AuditByProviderRef(reference),
        (None, Some(key)) => Request::AuditByIdempotencyKey(key),
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
            get(|State(s): State<Arc<AppState>>, id: Result<Path<String>, PathRejection>| async move {
                // A segment that is not UTF-8 (`%80`) is axum's plain-text 400 unless answered here.
                let Ok(Path(id)) = id else { return refuse(ErrorCode::InvalidRequest, "payment_id must be a UUID") };
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
    let (port, bind) = (config.port, config.bind);
    let state = AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .map_err(|error| anyhow::anyhow!("BIND_ADDRESS={bind}, PORT={port}: {error}"))?;
    eprintln!("posim stack: listening on {bind} port {port}, canary {}", state.config.deploy.canary.summary());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Result<ServeConfig, ConfigError> {
        let mut env: std::collections::BTreeMap<&str, &str> = [
            ("DATABASE_URL", "postgres://posim:pw@127.0.0.1:5432/payments"),
            ("PSP_BASE_URL", "http://127.0.0.1:9000"),
            ("IOT_GATEWAY_URL", "http://127.0.0.1:9000"),
        ]
        .into();
        env.extend(extra.iter().copied());
        ServeConfig::from_env(&|name| env.get(name).map(|value| value.to_string()))
    }

    #[test]
    fn the_stack_listens_on_loopback_unless_told_otherwise() {
        let loopback = config(&[]).expect("a valid env");
        assert_eq!(loopback.bind, std::net::IpAddr::from([127, 0, 0, 1]));
        let everywhere = config(&[("BIND_ADDRESS", "0.0.0.0")]).expect("a valid env");
        assert_eq!(everywhere.bind, std::net::IpAddr::from([0, 0, 0, 0]));
        let error = config(&[("BIND_ADDRESS", "everywhere")]).expect_err("not an address");
        assert_eq!(error.variable, "BIND_ADDRESS");
    }

    /// Found by tests/fuzz_env.rs: `http://` alone was a base URL, `postgres://` a database.
    #[test]
    fn a_url_needs_more_than_its_scheme() {
        let error = config(&[("DATABASE_URL", "postgres:////")]).expect_err("no database");
        assert_eq!(error.variable, "DATABASE_URL");
        for value in ["http://", "http:////", "http://:80", "http://a b"] {
            let error = config(&[("IOT_GATEWAY_URL", value)]).expect_err(value);
            assert_eq!(error.variable, "IOT_GATEWAY_URL", "{value}");
        }
        let fine = config(&[("PSP_BASE_URL", "http://world:9000/")]).expect("a host");
        assert_eq!(fine.psp_base_url, "http://world:9000");
    }

    /// Found by tests/fuzz_env.rs: any positive number was accepted.
    #[test]
    fn the_psp_timeout_is_bounded() {
        let longest = config(&[(PSP_TIMEOUT_VAR, "600000")]).expect("the bound itself is fine");
        assert_eq!(longest.psp_timeout, Duration::from_millis(PSP_TIMEOUT_MS_MAX));
        for value in ["600001", "18446744073709551615", "0", "-1"] {
            let error = config(&[(PSP_TIMEOUT_VAR, value)]).expect_err(value);
            assert_eq!(error.variable, PSP_TIMEOUT_VAR, "{value}");
        }
    }

    #[test]
    fn only_already_refunded_is_a_refund_among_the_409s() {
        assert_eq!(refund_conflict(br#"{"error": "already_refunded"}"#), Some(PspOutcome::AlreadyRefunded));
        assert_eq!(refund_conflict(br#"{"error": "not_captured"}"#), None, "a declined charge was not refunded");
        assert_eq!(refund_conflict(br#"{"error": "whatever"}"#), None);
        assert_eq!(refund_conflict(b"not json"), None);
    }
}
