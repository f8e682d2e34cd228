//! The history of a run: what each party sent and saw, with times. Both
//! engines record it; the checkers and the KPI windows read only this. Its
//! trace hash (xxh3-128 over every record) is how determinism is shown.

use std::hash::{Hash, Hasher};
use std::io::Write;

use serde::Serialize;
use uuid::Uuid;
use xxhash_rust::xxh3::Xxh3;

use crate::contract::{CanaryConfig, Endpoint, ErrorCode, PaymentStatus, Reply, Text};
use crate::criteria::CriterionResult;
use crate::faults::{FaultKey, FaultKind, FaultSite, StackFaultAction, WorldEndpoint};
use crate::time::{self, Millis};
use crate::world::PurchaseOutcome;
use crate::world::calls::{Called, WorldAnswer};
use crate::world::outcomes::{Fired, Truth};

/// Purchase number of requests that no terminal sent (the sweep's cron,
/// posim's probes, the operator's calls).
pub const NO_PURCHASE: u32 = u32::MAX;

/// One deploy of the stack: the canary config it applies and its build.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeployInfo {
    /// The phase name, or what the rollback was (`rollback: partial`).
    pub label: String,
    pub canary: CanaryConfig,
    /// The plan phase in effect when it was deployed.
    pub phase: u16,
    /// Share of confirm and execute-cycle requests its build fails (0: a good build).
    pub bad_build_error_rate: f64,
}

/// What a decision was, in the runbook's words (§5 "Decisão").
/// The operation log writes it in words (`partial rollback`), the JSON in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum DecisionKind {
    /// The first deploy of the rollout (phase 1).
    Start,
    Advance,
    Hold,
    #[strum(serialize = "partial rollback")]
    PartialRollback,
    #[strum(serialize = "total cut")]
    TotalCut,
    Freeze,
    /// An operator deploy outside the plan.
    Deploy,
    /// A deploy refused for a bad env: the previous config keeps serving.
    Refused,
    /// Incident A: executions reprocessed.
    Reprocess,
    /// Incident C: a suspected duplicate audited.
    Audit,
    /// A game day: the controller saw a criterion broken and raised the
    /// runbook's alert; only people act on it.
    Alert,
    /// A game day: the facilitator set an incident off (hidden from the operators).
    Inject,
}

impl DecisionKind {
    pub fn is_rollback(self) -> bool {
        matches!(self, DecisionKind::PartialRollback | DecisionKind::TotalCut | DecisionKind::Freeze)
    }

    /// A response to an incident: something done about it (a game day's
    /// time to detect ends at the first one).
    pub fn responds(self) -> bool {
        self.is_rollback() || matches!(self, DecisionKind::Deploy | DecisionKind::Reprocess | DecisionKind::Audit)
    }
}

/// One decision and its evidence, for the operation log (§5).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub at: Millis,
    pub who: String,
    pub kind: DecisionKind,
    /// The deploy it applied, if any.
    pub deploy: Option<u16>,
    /// The deploy serving when it was taken (none before the first).
    pub previous: Option<u16>,
    /// The KPI window it judged: from here to `at`.
    pub window_from: Millis,
    /// Why, in a few lines (criteria, ids, audit results).
    pub evidence: Vec<String>,
    /// The criteria as judged for this decision (empty when it judged none:
    /// an operator's call, the plan, an incident procedure).
    pub criteria: Vec<CriterionResult>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownCause {
    Deploy,
    Crash,
}

/// One thing that happened. Ids are indices into the run's fleet, requests
/// and purchases; payment ids are the stack's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A deploy was decided: a new KPI window opens.
    DeployStarted {
        deploy: u16,
    },
    /// A decision of the controller or the operator (see `History::decisions`).
    Decided {
        decision: u16,
    },
    /// posim asked `authorize` for a condominium to validate a rollback.
    Probed {
        request: u32,
        condominium: u32,
    },
    /// The audit of §4C by idempotency key: the payments the stack returned.
    AuditedKey {
        idempotency_key: Text,
        payments: Vec<Uuid>,
    },
    ReplicaUp {
        replica: u16,
        config: u16,
    },
    ReplicaDown {
        replica: u16,
        cause: DownCause,
    },
    /// A customer starts a purchase at a terminal. Numbers follow the
    /// traffic plan: a customer who found every machine taken leaves a gap.
    Arrived {
        purchase: u32,
        condominium: u32,
        machine: u32,
    },
    Sent {
        request: u32,
        purchase: u32,
        endpoint: Endpoint,
        attempt: u8,
        twin: bool,
    },
    /// The stack took the request on `replica`, which applied deploy `config`.
    Received {
        request: u32,
        replica: u16,
        config: u16,
    },
    /// The stack answered (whether or not the answer arrives), with the
    /// identifiers it named, so that its promises can be judged (D9).
    Answered {
        request: u32,
        status: u16,
        error: Option<ErrorCode>,
        #[serde(skip_serializing_if = "Option::is_none")]
        payment: Option<Uuid>,
        #[serde(skip_serializing_if = "Option::is_none")]
        execute_key: Option<Text>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cycle: Option<Text>,
    },
    /// What the terminal heard: a status, or nothing before its timeout.
    Heard {
        request: u32,
        status: Option<u16>,
        error: Option<ErrorCode>,
    },
    /// A status a terminal was told for a payment.
    Told {
        purchase: u32,
        payment: Uuid,
        status: PaymentStatus,
    },
    /// The PSP charged a card (ground truth).
    Charged {
        purchase: u32,
        payment: Uuid,
        provider_ref: Text,
        captured: bool,
    },
    /// The PSP refunded a charge (ground truth).
    Refunded {
        payment: Uuid,
        provider_ref: Text,
    },
    /// A machine started a cycle (ground truth).
    CycleStarted {
        machine: u32,
        payment: Uuid,
        execute_key: Text,
        cycle: Text,
    },
    /// A planned fault fired, on the call its roll was keyed on (the same
    /// key in both engines: see [`crate::faults::roll_ids`]).
    Fault {
        fault: u16,
        kind: FaultKind,
        key: FaultKey,
    },
    /// A scheduled stack fault began (`ended: false`) or was undone.
    StackFault {
        fault: u16,
        action: StackFaultAction,
        replica: u16,
        ended: bool,
    },
    Swept {
        expired: u32,
        compensated: u32,
        backlog: u32,
    },
    Ended {
        purchase: u32,
        outcome: PurchaseOutcome,
    },
    /// The final audit: `GET /api/payments/{id}` (None: not found).
    Audited {
        payment: Uuid,
        status: Option<PaymentStatus>,
    },
    /// The final audit by provider_ref (§4C): the payments the stack returned.
    AuditedCharge {
        provider_ref: Text,
        payments: Vec<Uuid>,
    },
    /// A replica exited on its own (posim neither stopped nor killed it),
    /// with its exit status as the launcher saw it. Last: a variant's place
    /// is in the trace hash, and earlier ones must keep theirs.
    ReplicaExited {
        replica: u16,
        status: String,
    },
    /// The world answered a call of the stack's (the PSP's or the gateway's
    /// endpoints): what it answered, about which payment.
    WorldAnswered {
        endpoint: WorldEndpoint,
        #[serde(skip_serializing_if = "Option::is_none")]
        payment: Option<Uuid>,
        answer: WorldAnswer,
    },
    /// The stack's answer (its status line heard) broke the contract: its
    /// body is not the contract's JSON for that endpoint and status (D9).
    /// Live only; last, so earlier variants keep their place in the hash.
    AnswerBroken {
        request: u32,
        status: u16,
        /// The parse error, as posim read the body.
        error: String,
    },
    /// posim itself lagged on a request beyond the bound it states (a tenth
    /// of the time it gave the stack to answer): its send went out late, or
    /// its runtime stalled while the request was open. Live only.
    HarnessLag {
        request: u32,
        /// posim's own delay on this request, in runbook milliseconds.
        lag_ms: Millis,
    },
}

impl Event {
    /// A request posim itself sends (the sweep's cron, a probe, the operator).
    pub fn sent_by_posim(request: u32, endpoint: Endpoint) -> Event {
        Event::Sent { request, purchase: NO_PURCHASE, endpoint, attempt: 1, twin: false }
    }

    /// The stack's `reply` to `request`, sent with HTTP `status`: the
    /// payment, execute_key and cycle it names are kept.
    pub fn answered(request: u32, status: u16, reply: &Reply) -> Event {
        let (payment, execute_key, cycle) = match reply {
            Reply::Authorized { payment, .. } => (Some(payment.payment_id), None, None),
            Reply::Confirmed { payment_id, execute_key, .. } => (Some(*payment_id), Some(execute_key.clone()), None),
            Reply::Executed { payment_id, cycle_id } => (Some(*payment_id), None, Some(cycle_id.clone())),
            _ => (None, None, None),
        };
        Event::Answered { request, status, error: reply.error_code(), payment, execute_key, cycle }
    }
}

impl From<Truth> for Event {
    fn from(truth: Truth) -> Event {
        match truth {
            Truth::Charged { purchase, payment, provider_ref, captured } => {
                Event::Charged { purchase, payment, provider_ref, captured }
            }
            Truth::Refunded { payment, provider_ref } => Event::Refunded { payment, provider_ref },
            Truth::CycleStarted { machine, payment, execute_key, cycle } => {
                Event::CycleStarted { machine, payment, execute_key, cycle }
            }
        }
    }
}

/// The records a call the world served leaves, in order: the fault played
/// on it, the ground truth it made (a charge refunded, a cycle started), then
/// what the world answered (both engines).
pub fn served_events(
    fired: Option<Fired>,
    called: Option<Called>,
    truth: Option<Truth>,
) -> impl Iterator<Item = Event> {
    let fired = fired.map(Event::from);
    fired.into_iter().chain(truth.map(Event::from)).chain(called.map(Event::from))
}

impl From<Called> for Event {
    fn from(called: Called) -> Event {
        Event::WorldAnswered { endpoint: called.endpoint, payment: called.payment, answer: called.answer }
    }
}

impl From<Fired> for Event {
    fn from(fired: Fired) -> Event {
        Event::Fault { fault: fired.fault, kind: fired.kind, key: fired.key }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Record {
    pub at: Millis,
    #[serde(flatten)]
    pub event: Event,
}

/// The recorded history and what is needed to read it.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub records: Vec<Record>,
    /// Every deploy, by index.
    pub deploys: Vec<DeployInfo>,
    /// Every decision, by index.
    pub decisions: Vec<Decision>,
    pub condominiums: Vec<Uuid>,
    pub machine_ids: Vec<Text>,
    /// A game day's incidents as set off (sealed or by the facilitator), in
    /// order: posim-auto's reference run meets the same ones.
    pub injected: Vec<crate::incident::Injection>,
}

impl History {
    pub fn push(&mut self, at: Millis, event: Event) {
        debug_assert!(self.records.last().is_none_or(|last| last.at <= at), "history goes forward in time");
        self.records.push(Record { at, event });
    }

    pub fn canary(&self, deploy: u16) -> &CanaryConfig {
        &self.deploys[usize::from(deploy)].canary
    }

    /// Adds a deploy and opens its KPI window; returns its index.
    pub fn add_deploy(&mut self, at: Millis, deploy: DeployInfo) -> u16 {
        self.deploys.push(deploy);
        let index = (self.deploys.len() - 1) as u16;
        self.push(at, Event::DeployStarted { deploy: index });
        index
    }

    /// Records a decision; returns its index.
    pub fn add_decision(&mut self, decision: Decision) -> u16 {
        let at = decision.at;
        self.decisions.push(decision);
        let index = (self.decisions.len() - 1) as u16;
        self.push(at, Event::Decided { decision: index });
        index
    }

    /// xxh3-128 over every record, deploy and decision, in order, as hex.
    pub fn trace_hash(&self) -> String {
        let mut hasher = TraceHasher::new();
        self.records.hash(&mut hasher);
        for deploy in &self.deploys {
            (&deploy.label, &deploy.canary, deploy.phase, deploy.bad_build_error_rate.to_bits()).hash(&mut hasher);
        }
        for decision in &self.decisions {
            (decision.at, &decision.who, decision.kind, decision.deploy, decision.window_from, &decision.evidence)
                .hash(&mut hasher);
        }
        format!("{:032x}", hasher.digest128())
    }

    /// Writes the trace as JSON lines.
    pub fn write_jsonl(&self, out: &mut impl Write) -> std::io::Result<()> {
        for record in &self.records {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// A one-line account of a record for witnesses, in the runbook's words.
    pub fn describe(&self, index: usize) -> String {
        let record = &self.records[index];
        format!("#{index} {} {}", time::clock(record.at), self.describe_event(&record.event))
    }

    fn describe_event(&self, event: &Event) -> String {
        match event {
            Event::Arrived { purchase, condominium, machine } => format!(
                "purchase {purchase} starts at condominium {} on machine {}",
                self.condominiums[*condominium as usize], self.machine_ids[*machine as usize]
            ),
            Event::Received { request, replica, config } => {
                let config = self.deploys.get(*config as usize).map_or("?".to_string(), |d| d.canary.summary());
                format!("request {request} reaches replica {replica} (canary {config})")
            }
            Event::CycleStarted { machine, payment, execute_key, cycle } => format!(
                "machine {} starts cycle {cycle} for payment {payment} (execute_key {execute_key})",
                self.machine_ids[*machine as usize]
            ),
            Event::Charged { purchase, payment, provider_ref, captured } => {
                let what = if *captured { "captures" } else { "declines" };
                format!("PSP {what} charge {provider_ref} for payment {payment} (purchase {purchase})")
            }
            Event::Answered { request, status, error, payment, execute_key, cycle } => {
                let mut text = format!("the stack answers request {request} with {status}");
                let named = [
                    error.map(|code| format!(" `{}`", <&'static str>::from(code))),
                    payment.map(|payment| format!(" for payment {payment}")),
                    execute_key.as_ref().map(|key| format!(" (execute_key {key})")),
                    cycle.as_ref().map(|cycle| format!(" (cycle {cycle})")),
                ];
                text.extend(named.into_iter().flatten());
                text
            }
            Event::Sent { request, purchase, endpoint, attempt, twin } => {
                let who = if *purchase == NO_PURCHASE {
                    "posim".to_string()
                } else {
                    format!("purchase {purchase}'s terminal")
                };
                let twin = if *twin { " (a double tap)" } else { "" };
                format!("{who} sends request {request}: {endpoint}, attempt {attempt}{twin}")
            }
            Event::Heard { request, status: Some(status), error } => {
                let error = error.map_or(String::new(), |code| format!(" `{}`", <&'static str>::from(code)));
                format!("the terminal hears {status}{error} for request {request}")
            }
            Event::Heard { request, status: None, .. } => {
                format!("the terminal hears nothing for request {request} before its timeout (an ambiguous answer)")
            }
            Event::Fault { fault, kind, key: FaultKey::Call { purchase, site, attempt } } => {
                let site = match site {
                    FaultSite::World(endpoint) => format!("the stack's {} call", snake(endpoint)),
                    FaultSite::Terminal { endpoint, lane } => {
                        format!("the terminal's {endpoint} request ({})", snake(lane))
                    }
                };
                format!("fault {fault} `{kind}` fires on {site} #{attempt} for purchase {purchase}")
            }
            Event::Refunded { payment, provider_ref } => {
                format!("PSP refunds charge {provider_ref} of payment {payment}")
            }
            Event::Told { purchase, payment, status } => {
                format!("purchase {purchase}'s terminal is told payment {payment} is {status:?}")
            }
            Event::WorldAnswered { endpoint, payment, answer } => {
                let about =
                    payment.map_or_else(|| " (a payment it does not know)".into(), |p| format!(" for payment {p}"));
                let world = match endpoint {
                    WorldEndpoint::StartCycle | WorldEndpoint::FindCycles => "gateway",
                    _ => "PSP",
                };
                format!("the {world} answers the stack's {} call{about}: {}", snake(endpoint), answer.describe())
            }
            Event::AnswerBroken { request, status, error } => {
                format!(
                    "the stack answers request {request} with {status} and a body that breaks the contract: {error}"
                )
            }
            Event::HarnessLag { request, lag_ms } => {
                format!("posim lagged {} on request {request} (its own delay, not the stack's)", time::human(*lag_ms))
            }
            other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
        }
    }
}

/// A serde-named value's name (`start_cycle`).
fn snake(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default().trim_matches('"').to_string()
}

/// Notes an `Arrived` purchase's condominium in a table by purchase number
/// (gaps, customers who found every machine taken, hold `u32::MAX`).
pub fn note_arrival(by_purchase: &mut Vec<u32>, purchase: u32, condominium: u32) {
    assert!(purchase as usize >= by_purchase.len(), "purchases arrive in plan order");
    by_purchase.resize(purchase as usize, u32::MAX);
    by_purchase.push(condominium);
}

/// Feeds `Hash` into xxh3 (derived `Hash` gives a stable, field-by-field
/// encoding). The fields come a few bytes at a time: they are gathered in a
/// buffer and handed over in large chunks, which xxh3's streaming digest
/// does not tell apart from the same bytes given one by one.
struct TraceHasher {
    xxh3: Xxh3,
    buffer: Vec<u8>,
}

/// How many bytes the hasher gathers before it feeds xxh3.
const HASH_CHUNK: usize = 1 << 16;

impl TraceHasher {
    fn new() -> Self {
        TraceHasher { xxh3: Xxh3::new(), buffer: Vec::with_capacity(HASH_CHUNK) }
    }

    fn digest128(mut self) -> u128 {
        self.xxh3.update(&self.buffer);
        self.xxh3.digest128()
    }
}

impl Hasher for TraceHasher {
    fn write(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > HASH_CHUNK {
            self.xxh3.update(&self.buffer);
            self.buffer.clear();
        }
        self.buffer.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        let mut xxh3 = self.xxh3.clone();
        xxh3.update(&self.buffer);
        xxh3.digest()
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn decisions_are_words_in_the_log_and_snake_case_in_json() {
        for kind in DecisionKind::iter() {
            let json = serde_json::to_value(kind).expect("a unit variant serialises");
            assert_eq!(json.as_str().map(|name| name.replace('_', " ")), Some(kind.to_string()), "{kind:?}");
        }
        assert_eq!(DecisionKind::PartialRollback.to_string(), "partial rollback");
        assert_eq!(serde_json::to_value(DecisionKind::TotalCut).ok(), Some(serde_json::json!("total_cut")));
    }
}
