//! A game day's desk (`posim gameday`): the operators' console and the
//! facilitator's page, served by posim on loopback (elsewhere only with a
//! token), live by server-sent events; and the inbox that carries people's
//! actions and the facilitator's incidents to the run, where the controller
//! takes them at the runbook time they arrive. What the pages show is
//! [`crate::gameday::console`]'s, made from the history.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::shared::Shared;
use crate::gameday::action::{ActionRequest, InjectRequest, menu_names};
use crate::gameday::console::{self, ConsoleState, LogLine, ReplicaView};
use crate::time::Millis;

const CONSOLE_PAGE: &str = include_str!("../gameday/console.html");
const FACILITATOR_PAGE: &str = include_str!("../gameday/facilitator.html");
/// How often the pages are sent the state (wall time).
const PUSH_EVERY: Duration = Duration::from_millis(500);

/// Where the desk listens and who may act.
#[derive(Clone, Debug)]
pub struct DeskOptions {
    pub listen: SocketAddr,
    /// Required of every action (and of the pages) when set; a desk that
    /// listens beyond loopback must have one.
    pub token: Option<String>,
}

/// What the pages and `posim op` ask of the run.
pub(crate) enum Ask {
    Act(ActionRequest, oneshot::Sender<Result<Vec<LogLine>, String>>),
    Inject(InjectRequest, oneshot::Sender<Result<Vec<LogLine>, String>>),
}

/// The run's end of the desk: the inbox the background loop reads.
pub(crate) struct Inbox(pub(crate) tokio::sync::Mutex<mpsc::Receiver<Ask>>);

#[derive(Clone)]
struct Desk {
    shared: Arc<Shared>,
    asks: mpsc::Sender<Ask>,
    token: Option<Arc<str>>,
}

/// Opens the inbox: its sender goes to the server, its receiver to the run.
pub(crate) fn inbox() -> (mpsc::Sender<Ask>, Inbox) {
    let (sender, receiver) = mpsc::channel(16);
    (sender, Inbox(tokio::sync::Mutex::new(receiver)))
}

/// Serves the desk; returns the address it listens on.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    asks: mpsc::Sender<Ask>,
    options: &DeskOptions,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let address = listener.local_addr()?;
    let desk = Desk { shared, asks, token: options.token.as_deref().map(Arc::from) };
    let router = Router::new()
        .route("/", get(|| async { Html(CONSOLE_PAGE) }))
        .route("/facilitator", get(|| async { Html(FACILITATOR_PAGE) }))
        .route("/api/state", get(state))
        .route("/api/facilitator/state", get(facilitator_state))
        .route("/api/events", get(events))
        .route("/api/actions", post(act))
        .route("/api/inject", post(inject))
        .with_state(desk);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("posim gameday: the console stopped: {error}");
        }
    });
    Ok(address)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl Desk {
    /// The token, from `Authorization: Bearer …` or `?token=` (the pages'
    /// event stream cannot set headers).
    fn admits(&self, headers: &HeaderMap, query: &TokenQuery) -> Result<(), Box<Response>> {
        let Some(token) = &self.token else { return Ok(()) };
        let bearer =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match bearer.or(query.token.as_deref()) {
            Some(given) if given == &**token => Ok(()),
            _ => Err(Box::new(refused(
                StatusCode::UNAUTHORIZED,
                "this game day needs its token (Authorization: Bearer …)",
            ))),
        }
    }

    fn snapshot(&self, facilitator: bool) -> ConsoleState {
        let shared = &self.shared;
        let slots = shared.slots.lock().expect("slots lock").clone();
        let scenario = &shared.scenario;
        // The recorder before the controller, as the engine takes them.
        shared.recorder.with(|history| {
            let mut controller = shared.controller.lock().expect("controller lock");
            let replicas = slots
                .iter()
                .enumerate()
                .map(|(replica, slot)| {
                    let deploy = history.deploys.get(usize::from(slot.deploy));
                    ReplicaView {
                        replica: replica as u16,
                        serving: slot.serving,
                        deploy: slot.deploy,
                        label: deploy.map_or(String::new(), |d| d.label.clone()),
                        env: deploy.map_or(Vec::new(), |d| {
                            d.canary.env().into_iter().map(|(name, value)| format!("{name}={value}")).collect()
                        }),
                    }
                })
                .collect();
            let now = shared.clock().now();
            let clock = console::Clock {
                now,
                end: scenario.end(),
                time_scale: shared.options.time_scale,
                finished: now >= scenario.end(),
            };
            // Catching the controller's index up early changes none of its
            // decisions: every tick catches up first.
            controller.index.catch_up(history);
            let index = &controller.index;
            let menu = facilitator.then(|| menu_names(&scenario.armed));
            console::snapshot(&scenario.name, (history, index, &scenario.criteria), replicas, &clock, menu)
        })
    }
}

fn refused(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": why.into() }))).into_response()
}

async fn state(State(desk): State<Desk>, headers: HeaderMap, Query(query): Query<TokenQuery>) -> Response {
    match desk.admits(&headers, &query) {
        Ok(()) => Json(desk.snapshot(false)).into_response(),
        Err(refusal) => *refusal,
    }
}

async fn facilitator_state(State(desk): State<Desk>, headers: HeaderMap, Query(query): Query<TokenQuery>) -> Response {
    match desk.admits(&headers, &query) {
        Ok(()) => Json(desk.snapshot(true)).into_response(),
        Err(refusal) => *refusal,
    }
}

/// The operators' state, pushed every half second.
async fn events(State(desk): State<Desk>, headers: HeaderMap, Query(query): Query<TokenQuery>) -> Response {
    if let Err(refusal) = desk.admits(&headers, &query) {
        return *refusal;
    }
    let stream = futures_util::stream::unfold(desk, |desk| async move {
        let state = serde_json::to_string(&desk.snapshot(false)).unwrap_or_else(|_| "{}".into());
        tokio::time::sleep(PUSH_EVERY).await;
        Some((Ok::<_, std::convert::Infallible>(SseEvent::default().data(state)), desk))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The request, if its sender may act and its JSON reads.
fn admitted<T>(desk: &Desk, headers: &HeaderMap, query: &TokenQuery, body: Body<T>) -> Result<T, Box<Response>> {
    desk.admits(headers, query)?;
    body.map(|Json(request)| request)
        .map_err(|rejection| Box::new(refused(StatusCode::BAD_REQUEST, rejection.body_text())))
}

async fn act(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    body: Body<ActionRequest>,
) -> Response {
    let request = match admitted(&desk, &headers, &query, body) {
        Ok(request) => request,
        Err(refusal) => return *refusal,
    };
    if let Err(refusal) = request.step(0) {
        return refused(StatusCode::BAD_REQUEST, refusal.to_string());
    }
    ask(&desk, |reply| Ask::Act(request, reply)).await
}

async fn inject(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    body: Body<InjectRequest>,
) -> Response {
    let request = match admitted(&desk, &headers, &query, body) {
        Ok(request) => request,
        Err(refusal) => return *refusal,
    };
    if let Err(refusal) = request.resolve(&desk.shared.scenario.armed) {
        return refused(StatusCode::BAD_REQUEST, refusal.to_string());
    }
    ask(&desk, |reply| Ask::Inject(request, reply)).await
}

/// Hands the ask to the run and answers with the log lines it produced.
async fn ask(desk: &Desk, make: impl FnOnce(oneshot::Sender<Result<Vec<LogLine>, String>>) -> Ask) -> Response {
    let (reply, answer) = oneshot::channel();
    if desk.asks.send(make(reply)).await.is_err() {
        return refused(StatusCode::CONFLICT, "the game day is over: nothing more can be done");
    }
    match answer.await {
        Ok(Ok(logged)) => Json(serde_json::json!({ "logged": logged })).into_response(),
        Ok(Err(why)) => refused(StatusCode::BAD_REQUEST, why),
        Err(_) => refused(StatusCode::CONFLICT, "the game day is over: nothing more can be done"),
    }
}

/// Serves a game day's pages and says where: on the console and in
/// `console.json` in the report's folder (for `posim op --run`).
pub(crate) async fn open(
    shared: &Arc<Shared>,
    asks: tokio::sync::mpsc::Sender<Ask>,
    desk: &DeskOptions,
) -> Result<(), std::io::Error> {
    let address = serve(Arc::clone(shared), asks, desk).await?;
    let url = format!("http://{address}");
    println!("console:     {url}/");
    println!("facilitator: {url}/facilitator");
    let record = serde_json::json!({ "url": url, "token_required": desk.token.is_some() });
    std::fs::write(shared.options.report_dir.join("console.json"), record.to_string())?;
    Ok(())
}

/// A game day's next ask from its desk; never, for any other run.
pub(crate) async fn next_ask(shared: &Shared) -> Option<Ask> {
    match &shared.inbox {
        Some(inbox) => inbox.0.lock().await.recv().await,
        None => std::future::pending().await,
    }
}

impl Shared {
    /// Carries out a person's action or the facilitator's incident at the
    /// runbook time it arrives, and answers with the log lines it produced.
    pub(crate) fn answer(self: &Arc<Self>, ask: Ask, tasks: &mut JoinSet<()>) {
        let now = self.clock().now();
        let (outcome, reply) = match ask {
            Ask::Act(request, reply) => (self.act(&request, now, tasks), reply),
            Ask::Inject(request, reply) => (self.set_off(&request, now, tasks), reply),
        };
        let _ = reply.send(outcome);
    }

    fn act(
        self: &Arc<Self>,
        request: &crate::gameday::action::ActionRequest,
        now: Millis,
        tasks: &mut JoinSet<()>,
    ) -> Result<Vec<crate::gameday::console::LogLine>, String> {
        let step = request.step(now).map_err(|refusal| refusal.to_string())?;
        let logged = self.decide(now, tasks, |controller, at, history| controller.operator(&step, at, history));
        Ok(self.recorder.with(|history| console::lines(history, logged.start)))
    }

    fn set_off(
        self: &Arc<Self>,
        request: &crate::gameday::action::InjectRequest,
        now: Millis,
        tasks: &mut JoinSet<()>,
    ) -> Result<Vec<crate::gameday::console::LogLine>, String> {
        use crate::gameday::action::SetOff;
        let set_off = request.resolve(&self.scenario.armed).map_err(|refusal| refusal.to_string())?;
        let logged = self.decide(now, tasks, |controller, at, history| {
            let incident = match set_off {
                SetOff::Now(incident) => incident,
                SetOff::Arm(armed) => {
                    let until = at.saturating_add(armed.lasts).max(at + 1);
                    (0..armed.dormant().len()).for_each(|k| self.faults.arm(armed.first_fault + k, at, until));
                    armed.incident(at)
                }
            };
            controller.inject(&crate::incident::Injection { at, incident }, at, history)
        });
        Ok(self.recorder.with(|history| console::lines(history, logged.start)))
    }
}
