//! What every task of a live run shares: the scenario, the recorder, the
//! world, and the load balancer in front of the replicas — which replica
//! serves, with which deploy and build — with the one way to send a request
//! to the stack and record what it answered. The engine, the terminals, the
//! operator's shell and the stack faults all go through it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::RngExt;
use serde_json::Value;
use tokio::task::JoinSet;

use super::clock::{Clock, Recorder};
use super::launcher::{LaunchError, Launcher};
use super::world::World;
use crate::contract::wire::{reply_from_json, request_to_http};
use crate::contract::{Charge, Endpoint, ErrorCode, Reply, Request};
use crate::faults::FaultPlan;
use crate::history::{DownCause, Event, History};
use crate::operator::{Facts, Operator, Paid};
use crate::rollout::controller::Controller;
use crate::scenario::Scenario;
use crate::seed::KeyedRoll;
use crate::time::Millis;
use crate::traffic::TrafficPlan;

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) url: Option<String>,
    pub(super) deploy: u16,
    pub(super) serving: bool,
    /// The share of requests the deploy's build fails (posim injects it here).
    pub(super) bad_build_error_rate: f64,
}

/// What every task of the run shares.
pub(crate) struct Shared {
    pub(crate) scenario: Scenario,
    pub(super) options: super::engine::LiveOptions,
    pub(super) recorder: Arc<Recorder>,
    pub(super) faults: FaultPlan,
    pub(super) http: reqwest::Client,
    pub(super) world: Arc<World>,
    pub(super) world_url: String,
    pub(super) slots: Mutex<Vec<Slot>>,
    pub(super) cursor: AtomicUsize,
    pub(super) next_request: AtomicU32,
    pub(super) stack_requests: AtomicU64,
    pub(super) bad_build: KeyedRoll,
    pub(super) latest_deploy: AtomicU16,
    pub(super) controller: Mutex<Controller>,
    pub(super) launcher: tokio::sync::Mutex<Launcher>,
    /// Per purchase number: its idempotency key and, once authorized, its payment.
    pub(super) registry: Mutex<BTreeMap<u32, (crate::contract::Text, Option<uuid::Uuid>)>>,
    /// The traffic plan, as the simulator has it.
    pub(crate) traffic: TrafficPlan,
    pub(super) operator: Mutex<Operator>,
    /// The operator's requests and wake-ups in flight.
    pub(super) operations: Mutex<JoinSet<()>>,
    /// Told of every stack request's latency (a load run measures with it).
    pub(super) observer: Option<Arc<dyn Observe>>,
    /// A game day: the asks of its console, `posim op` and the facilitator.
    pub(super) inbox: Option<super::desk::Inbox>,
    /// posim's own lag, measured as the run goes.
    pub(super) lag: Arc<super::lag::LagWatch>,
    /// The test hook that starves posim's sends ([`super::lag::TEST_SEND_DELAY_VAR`]).
    pub(super) send_delay: Option<super::lag::SendDelay>,
}

/// Watches the stack requests of a run as they are answered.
pub trait Observe: Send + Sync {
    /// `request` took `elapsed` on the wire; `error` names what went wrong
    /// (an error code, or `no answer`), `None` for a success.
    fn answered(&self, request: &Request, elapsed: std::time::Duration, error: Option<String>);
}

/// The answer to one request, as the client saw it.
pub(crate) enum Heard {
    Reply(Reply),
    Nothing,
}

impl Shared {
    pub(super) fn clock(&self) -> Clock {
        self.recorder.clock
    }

    /// The stack's database as posim reaches it from the host, or why posim knows none.
    pub(crate) async fn host_database_url(&self) -> Result<String, String> {
        self.launcher.lock().await.host_database_url().await
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
    /// `timeout` (runbook time) runs from this call, as a terminal's runs
    /// from the moment it sends: posim's own lateness is inside it, measured,
    /// and recorded as `HarnessLag` when beyond the bound.
    pub(super) async fn send(&self, id: u32, request: &Request, timeout: Millis, drop_answer: bool) -> Heard {
        let due = std::time::Instant::now();
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
        let deadline = due + self.clock().wall(timeout);
        if let Some(delay) = self.send_delay.and_then(|hook| hook.at(self.clock().now())) {
            tokio::time::sleep(delay).await; // the test hook: posim starved before it sends
        }
        let sent = std::time::Instant::now();
        let mut status = None;
        let body = tokio::time::timeout_at(deadline.into(), self.exchange(&url, request, &mut status)).await;
        self.note_lag(id, timeout, (due, sent));
        if status.is_some() {
            self.record(Event::Received { request: id, replica, config: deploy });
        }
        // A status line without its whole body before the timeout (or a cut
        // connection) is nothing heard, as a terminal would have it: never a breach.
        let (Some(status), Ok(Some(body))) = (status, body) else {
            self.observe(request, sent, Some("no answer".into()));
            return Heard::Nothing;
        };
        let parsed = serde_json::from_slice::<Value>(&body)
            .map_err(|error| error.to_string())
            .and_then(|json| reply_from_json(request.endpoint(), status, &json).map_err(|error| error.to_string()));
        let reply = match parsed {
            Ok(reply) => {
                self.record(Event::answered(id, status, &reply));
                reply
            }
            Err(error) => {
                let reply = Reply::error(ErrorCode::Unavailable, format!("the stack broke the contract: {error}"));
                self.record(Event::AnswerBroken { request: id, status, error });
                reply
            }
        };
        self.observe(request, sent, reply.error_code().map(|code| code.to_string()));
        if drop_answer { Heard::Nothing } else { Heard::Reply(reply) }
    }

    /// One HTTP exchange: the status line (kept in `status` as soon as it
    /// comes), then the whole body; `None`: the body never came whole.
    async fn exchange(&self, url: &str, request: &Request, status: &mut Option<u16>) -> Option<Vec<u8>> {
        let (method, path, body) = request_to_http(request);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a contract method");
        let mut call = self.http.request(method, format!("{url}{path}"));
        if let Some(body) = body {
            call = call.json(&body);
        }
        let response = call.send().await.ok()?;
        *status = Some(response.status().as_u16());
        response.bytes().await.ok().map(|body| body.to_vec())
    }

    /// Records posim's own lag on request `id` when beyond the bound: how
    /// late it went out (`due` → `sent`), or the runtime's worst stall while
    /// it was open, whichever is longer.
    fn note_lag(&self, id: u32, timeout: Millis, (due, sent): (std::time::Instant, std::time::Instant)) {
        let late = sent.saturating_duration_since(due);
        let held = late.max(self.lag.worst_stall(due, std::time::Instant::now()));
        let lag_ms = self.clock().runbook(held);
        if lag_ms > crate::harness::lag_bound(timeout) {
            self.lag.note_lagged(lag_ms);
            self.record(Event::HarnessLag { request: id, lag_ms });
        }
    }

    fn observe(&self, request: &Request, started: std::time::Instant, error: Option<String>) {
        if let Some(observer) = &self.observer {
            observer.answered(request, started.elapsed(), error);
        }
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

    /// A rolling deploy, one replica at a time (all at once for the first).
    pub(super) async fn roll_out(&self, deploy: u16) -> Result<(), LaunchError> {
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
            let skewed = launcher.deploy(replica, &canary, &self.crossing()).await?;
            self.put_back(replica as u16, launcher.url(replica), deploy);
            drop(launcher);
            self.record(Event::ReplicaUp { replica: replica as u16, config: deploy });
            if let Some(fired) = skewed {
                self.record(fired.into());
            }
        }
        Ok(())
    }

    /// Now and the phase in effect, for a replica-wide fault's scope.
    pub(super) fn crossing(&self) -> crate::faults::Crossing {
        crate::faults::Crossing::replica_wide(self.clock().now(), self.world.phase())
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

/// The scheduled time of a tick or step, never before the last record (the
/// history stays in order; a late wake-up does not shift the runbook's schedule).
pub(super) fn now_in(history: &History, at: Millis) -> Millis {
    at.max(history.records.last().map_or(0, |r| r.at))
}

/// A uniform draw in `[low, high]`.
pub(super) fn between(rng: &mut rand_chacha::ChaCha8Rng, (low, high): (Millis, Millis)) -> Millis {
    rng.random_range(low..=high)
}
