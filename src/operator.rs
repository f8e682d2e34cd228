//! The operator of the runbook, written once and sans-IO: probing the
//! condominiums a rollback denies (§2), reprocessing executions for customers
//! who paid and got no wash (§4A, with the support ticket), auditing
//! suspected duplicates (§4C) and the final audit after the drain.
//!
//! Like the stack's core, it never waits and never touches a socket: the
//! engines feed it the controller's commands, the answers to the requests it
//! asked for, its wake-ups and `now`, and carry out the [`Output`]s it
//! returns. What it reads off the world comes through [`Facts`].

use std::collections::{BTreeMap, VecDeque};

use uuid::Uuid;

use crate::contract::{Charge, ChargeStatus, Endpoint, ErrorCode, ExecuteRequest, PaymentStatus, Reply, Request, Text};
use crate::history::{Decision, DecisionKind, Event, History};
use crate::rollout::controller::{Asked, Command, audit_line, opened_by};
use crate::time::{Millis, SECOND};
use crate::world::Fleet;

/// How often, and how many times, a denied condominium is probed.
pub const PROBE_EVERY: Millis = 10 * SECOND;
pub const PROBES_MAX: u16 = 90;
/// How often, and how many times, the operator tries a reprocess (§4A.3).
pub const REPROCESS_RETRY_EVERY: Millis = 2 * 60 * SECOND;
pub const REPROCESS_ATTEMPTS_MAX: u8 = 3;

/// Names one job of the operator in its requests and wake-ups.
pub type Token = u32;

/// A purchase as the operator looks it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paid {
    pub payment: Uuid,
    pub idempotency_key: Text,
    /// Where the purchase was made, when the engine routes by it.
    pub condominium: Option<u32>,
}

/// What the operator reads off the world; the engines implement it.
pub trait Facts {
    /// The purchase's payment, once a terminal was given one.
    fn paid(&self, purchase: u32) -> Option<Paid>;
    /// The payment's charges at the PSP.
    fn charges(&self, payment: Uuid) -> Vec<Charge>;
    /// The cycles the machines' logs show for the payment.
    fn cycles(&self, payment: Uuid) -> usize;
    /// The deploy the controller decided last.
    fn latest_deploy(&self) -> u16;
    /// Every replica serves `deploy`.
    fn serves_everywhere(&self, deploy: u16) -> bool;
}

/// A request the operator asks the engine to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub token: Token,
    pub request: Request,
    pub endpoint: Endpoint,
    pub condominium: Option<u32>,
    /// A read-only audit query: the simulator may read it straight from the store.
    pub read: bool,
    /// The condominium this request probes, if it is a probe.
    probed: Option<u32>,
}

impl Call {
    /// The history events of sending it as request `id`.
    pub fn events(&self, id: u32) -> Vec<Event> {
        let mut events = vec![Event::sent_by_posim(id, self.endpoint)];
        events.extend(self.probed.map(|condominium| Event::Probed { request: id, condominium }));
        events
    }
}

/// What the operator asks of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send(Call),
    /// Call [`Operator::wake`] with `token` at `at`.
    Wake {
        at: Millis,
        token: Token,
    },
    Record(Event),
    /// A line of the operation log (the audit, the support ticket).
    Decide(Decision),
}

struct Probe {
    condominium: u32,
    deploy: u16,
    attempt: u16,
}

struct Reprocess {
    paid: Paid,
    asked: Asked,
    attempt: u8,
    execute: Option<ExecuteRequest>,
}

/// One step of an audit, in the order it runs.
enum Step {
    /// §4C: the payments the stack returns for the suspect's idempotency key.
    Key { purchase: u32, paid: Paid },
    /// The payments the stack returns for a charge's provider_ref.
    Charge(Text),
    /// §4C: the suspect's line, once its queries are answered.
    Line { purchase: u32, paid: Paid, payments_for_key: usize },
    /// The final audit: the payment as the stack reads it.
    Payment(Uuid),
}

struct Audit {
    steps: VecDeque<Step>,
    /// The §4C decision it ends with (none for the final audit).
    asked: Option<Asked>,
    evidence: Vec<String>,
}

enum Job {
    Probe(Probe),
    Reprocess(Reprocess),
    Audit(Audit),
}

/// The operator's jobs in progress, by token.
pub struct Operator {
    fleet: Fleet,
    next: Token,
    jobs: BTreeMap<Token, Job>,
}

impl Operator {
    pub fn new(fleet: Fleet) -> Self {
        Operator { fleet, next: 0, jobs: BTreeMap::new() }
    }

    /// No request in flight and no wake-up pending.
    pub fn idle(&self) -> bool {
        self.jobs.is_empty()
    }

    fn start(&mut self, job: Job) -> Token {
        let token = self.next;
        self.next += 1;
        self.jobs.insert(token, job);
        token
    }

    /// Carries out a controller's command (rollouts are the engine's).
    pub fn command(&mut self, command: Command, now: Millis, facts: &impl Facts) -> Vec<Output> {
        match command {
            Command::RollOut { .. } => unreachable!("the engine rolls deploys out"),
            Command::Probe { deploy, condominiums } => condominiums
                .into_iter()
                .map(|condominium| {
                    let token = self.start(Job::Probe(Probe { condominium, deploy, attempt: 0 }));
                    Output::Wake { at: now, token }
                })
                .collect(),
            Command::Audit { purchases, asked } => {
                let steps = purchases
                    .into_iter()
                    .filter_map(|purchase| facts.paid(purchase).map(|paid| Step::Key { purchase, paid }))
                    .collect();
                let token = self.start(Job::Audit(Audit { steps, asked: Some(asked), evidence: Vec::new() }));
                self.advance(token, now, facts)
            }
            Command::Reprocess { purchases, asked } => {
                let mut outputs = Vec::new();
                for purchase in purchases {
                    let Some(paid) = facts.paid(purchase) else { continue };
                    let request = Request::GetPayment(paid.payment.to_string());
                    let condominium = paid.condominium;
                    let job = Reprocess { paid, asked: asked.clone(), attempt: 0, execute: None };
                    let token = self.start(Job::Reprocess(job));
                    outputs.push(send(token, request, condominium, false));
                }
                outputs
            }
        }
    }

    /// After the drain: every payment a terminal was given, and every
    /// captured charge, read back through the stack's own API (§4C).
    pub fn final_audit(
        &mut self,
        (mut payments, charges): (Vec<Uuid>, Vec<Text>),
        now: Millis,
        facts: &impl Facts,
    ) -> Vec<Output> {
        payments.sort_unstable();
        payments.dedup();
        let steps = payments.into_iter().map(Step::Payment).chain(charges.into_iter().map(Step::Charge)).collect();
        let token = self.start(Job::Audit(Audit { steps, asked: None, evidence: Vec::new() }));
        self.advance(token, now, facts)
    }

    /// The wake-up the operator asked for.
    pub fn wake(&mut self, token: Token, facts: &impl Facts) -> Vec<Output> {
        match self.jobs.get(&token) {
            Some(Job::Probe(probe)) if probe.deploy != facts.latest_deploy() => {
                self.jobs.remove(&token); // a newer decision took over
                Vec::new()
            }
            Some(Job::Probe(probe)) => {
                let attempt = u32::from(probe.attempt);
                let request = crate::rollout::probe_request(&self.fleet, probe.condominium, probe.deploy, attempt);
                let condominium = Some(probe.condominium);
                let mut probe = send(token, request, condominium, false);
                if let Output::Send(send) = &mut probe {
                    send.probed = condominium;
                }
                vec![probe]
            }
            Some(Job::Reprocess(job)) => {
                let execute = job.execute.clone().expect("a retry executes");
                vec![send(token, Request::ExecuteCycle(execute), job.paid.condominium, false)]
            }
            Some(Job::Audit(_)) | None => unreachable!("woken for a job that asked for no wake-up"),
        }
    }

    /// The answer to a request the operator sent (`None`: none came).
    pub fn answered(&mut self, token: Token, reply: Option<Reply>, now: Millis, facts: &impl Facts) -> Vec<Output> {
        match self.jobs.get_mut(&token) {
            Some(Job::Probe(_)) => self.probe_answered(token, reply, now, facts),
            Some(Job::Reprocess(_)) => self.reprocess_answered(token, reply, now),
            Some(Job::Audit(_)) => {
                let recorded = self.audit_answered(token, reply, facts);
                let mut outputs = vec![Output::Record(recorded)];
                outputs.extend(self.advance(token, now, facts));
                outputs
            }
            None => unreachable!("an answer to a request the operator did not send"),
        }
    }

    /// Probing stops once every replica serves the deploy and the answer is a denial.
    fn probe_answered(&mut self, token: Token, reply: Option<Reply>, now: Millis, facts: &impl Facts) -> Vec<Output> {
        let Some(Job::Probe(probe)) = self.jobs.get_mut(&token) else { unreachable!("a probe") };
        let denied = reply.and_then(|reply| reply.error_code()) == Some(ErrorCode::CanaryNotAllowed);
        if !(denied && facts.serves_everywhere(probe.deploy)) && probe.attempt + 1 < PROBES_MAX {
            probe.attempt += 1;
            return vec![Output::Wake { at: now + PROBE_EVERY, token }];
        }
        self.jobs.remove(&token);
        Vec::new()
    }

    /// §4A: the payment looked up (payment_id, execute_key), then executed again.
    fn reprocess_answered(&mut self, token: Token, reply: Option<Reply>, now: Millis) -> Vec<Output> {
        let Some(Job::Reprocess(job)) = self.jobs.get_mut(&token) else { unreachable!("a reprocess") };
        match reply {
            Some(Reply::Payment(view)) if view.status == PaymentStatus::Confirmed && view.execute_key.is_some() => {
                let execute_key = view.execute_key.expect("checked above");
                let execute = ExecuteRequest { payment_id: view.payment_id.to_string(), execute_key };
                job.execute = Some(execute.clone());
                vec![send(token, Request::ExecuteCycle(execute), job.paid.condominium, false)]
            }
            Some(Reply::Error { code, .. }) if code.retryable() => self.reprocess_failed(token, now),
            None => self.reprocess_failed(token, now),
            Some(_) => {
                // executed, compensated, expired, or a refusal: nothing more to do
                self.jobs.remove(&token);
                Vec::new()
            }
        }
    }

    fn reprocess_failed(&mut self, token: Token, now: Millis) -> Vec<Output> {
        let Some(Job::Reprocess(job)) = self.jobs.get_mut(&token) else { unreachable!("a reprocess") };
        job.attempt += 1;
        if job.attempt < REPROCESS_ATTEMPTS_MAX && job.execute.is_some() {
            return vec![Output::Wake { at: now + REPROCESS_RETRY_EVERY, token }];
        }
        let Some(Job::Reprocess(job)) = self.jobs.remove(&token) else { unreachable!("a reprocess") };
        vec![Output::Decide(support_ticket(job, now))]
    }

    /// Records what the stack answered to the audit's current query.
    fn audit_answered(&mut self, token: Token, reply: Option<Reply>, facts: &impl Facts) -> Event {
        let Some(Job::Audit(audit)) = self.jobs.get_mut(&token) else { unreachable!("an audit") };
        let payments = match &reply {
            Some(Reply::Payments(views)) => views.iter().map(|view| view.payment_id).collect(),
            _ => Vec::new(),
        };
        match audit.steps.pop_front().expect("an audit answers its current step") {
            Step::Key { purchase, paid } => {
                let charges = facts.charges(paid.payment);
                let line = Step::Line { purchase, paid: paid.clone(), payments_for_key: payments.len() };
                audit.steps.push_front(line);
                for charge in charges.into_iter().rev() {
                    audit.steps.push_front(Step::Charge(charge.provider_ref));
                }
                Event::AuditedKey { idempotency_key: paid.idempotency_key, payments }
            }
            Step::Charge(provider_ref) => Event::AuditedCharge { provider_ref, payments },
            Step::Payment(payment) => {
                let status = match reply {
                    Some(Reply::Payment(view)) => Some(view.status),
                    _ => None,
                };
                Event::Audited { payment, status }
            }
            Step::Line { .. } => unreachable!("a line asks nothing"),
        }
    }

    /// Sends the audit's next query, or ends it with its decision.
    fn advance(&mut self, token: Token, now: Millis, facts: &impl Facts) -> Vec<Output> {
        let Some(Job::Audit(audit)) = self.jobs.get_mut(&token) else { unreachable!("an audit") };
        while let Some(Step::Line { purchase, paid, payments_for_key }) = audit.steps.front() {
            let charges = facts.charges(paid.payment);
            let standing = charges.iter().filter(|charge| charge.status == ChargeStatus::Captured).count();
            let cycles = facts.cycles(paid.payment);
            let key = &paid.idempotency_key;
            audit.evidence.push(audit_line(*purchase, key, *payments_for_key, charges.len(), standing, cycles));
            audit.steps.pop_front();
        }
        let (request, condominium) = match audit.steps.front() {
            Some(Step::Key { paid, .. }) => {
                (Request::AuditByIdempotencyKey(paid.idempotency_key.clone()), paid.condominium)
            }
            Some(Step::Charge(provider_ref)) => (Request::AuditByProviderRef(provider_ref.clone()), None),
            Some(Step::Payment(payment)) => (Request::GetPayment(payment.to_string()), None),
            Some(Step::Line { .. }) => unreachable!("lines were written above"),
            None => {
                let Some(Job::Audit(audit)) = self.jobs.remove(&token) else { unreachable!("an audit") };
                return audit
                    .asked
                    .map(|asked| Output::Decide(audit_decision(asked, audit.evidence, now)))
                    .into_iter()
                    .collect();
            }
        };
        vec![send(token, request, condominium, true)]
    }
}

fn send(token: Token, request: Request, condominium: Option<u32>, read: bool) -> Output {
    let endpoint = request.endpoint();
    Output::Send(Call { token, request, endpoint, condominium, read, probed: None })
}

fn audit_decision(asked: Asked, evidence: Vec<String>, now: Millis) -> Decision {
    Decision {
        at: now,
        kind: DecisionKind::Audit,
        deploy: None,
        previous: asked.previous,
        window_from: asked.window_from,
        evidence: opened_by(asked.evidence.as_deref(), evidence),
        who: asked.who,
        criteria: Vec::new(),
    }
}

/// §4A.3: the reprocess failed repeatedly — a support ticket with the ids.
fn support_ticket(job: Reprocess, now: Millis) -> Decision {
    let key = job.execute.as_ref().map_or("?".to_string(), |execute| execute.execute_key.to_string());
    let evidence = vec![format!(
        "reprocess failed {} times: support ticket for payment {}, execute_key {key}",
        job.attempt, job.paid.payment
    )];
    Decision {
        at: now,
        kind: DecisionKind::Reprocess,
        deploy: None,
        previous: job.asked.previous,
        window_from: job.asked.window_from,
        evidence: opened_by(job.asked.evidence.as_deref(), evidence),
        who: job.asked.who,
        criteria: Vec::new(),
    }
}

/// Every captured charge the history shows, in the order they were made.
pub fn captured_charges(history: &History) -> Vec<Text> {
    history
        .records
        .iter()
        .filter_map(|record| match &record.event {
            Event::Charged { provider_ref, captured: true, .. } => Some(provider_ref.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::PaymentView;
    use crate::world::fleet::FleetShape;
    use std::cell::Cell;

    /// A world of two paid purchases; the test sets what the replicas serve.
    struct World {
        serving: Cell<u16>,
        latest: u16,
    }

    fn payment(purchase: u32) -> Uuid {
        Uuid::from_u128(1000 + u128::from(purchase))
    }

    impl Facts for World {
        fn paid(&self, purchase: u32) -> Option<Paid> {
            let idempotency_key = format!("key-{purchase}").into();
            (purchase < 2).then(|| Paid { payment: payment(purchase), idempotency_key, condominium: Some(0) })
        }

        fn charges(&self, payment: Uuid) -> Vec<Charge> {
            let charge = |provider_ref: &str, status| Charge {
                provider_ref: provider_ref.into(),
                payment_id: payment,
                amount_cents: 100,
                status,
            };
            vec![charge(&format!("ch-{payment}-a"), ChargeStatus::Captured), charge("ch-b", ChargeStatus::Captured)]
        }

        fn cycles(&self, _: Uuid) -> usize {
            1
        }

        fn latest_deploy(&self) -> u16 {
            self.latest
        }

        fn serves_everywhere(&self, deploy: u16) -> bool {
            self.serving.get() == deploy
        }
    }

    fn operator() -> Operator {
        let shape = FleetShape {
            seed: 1,
            condominiums: 2,
            machines_per_condominium: 1,
            terminals_per_condominium: 1,
            naive_share: 0.0,
        };
        Operator::new(Fleet::generate(&shape))
    }

    fn asked() -> Asked {
        Asked { who: "ops".into(), evidence: None, previous: Some(1), window_from: 500 }
    }

    #[test]
    fn a_persons_evidence_opens_the_decisions_their_action_ends_with() {
        let theirs = Asked { evidence: Some("double charge reported".into()), ..asked() };
        let audit = audit_decision(theirs, vec!["purchase 3: no duplicate".into()], 900);
        assert_eq!(audit.evidence, ["evidence: double charge reported", "purchase 3: no duplicate"]);
        let scripted = audit_decision(asked(), vec!["purchase 3: no duplicate".into()], 900);
        assert_eq!(scripted.evidence, ["purchase 3: no duplicate"]);
    }

    fn sends(outputs: &[Output]) -> Vec<&Call> {
        outputs.iter().filter_map(|output| if let Output::Send(send) = output { Some(send) } else { None }).collect()
    }

    fn decisions(outputs: &[Output]) -> Vec<&Decision> {
        outputs.iter().filter_map(|output| if let Output::Decide(d) = output { Some(d) } else { None }).collect()
    }

    fn view(purchase: u32, status: PaymentStatus) -> Reply {
        Reply::Payment(Box::new(PaymentView {
            payment_id: payment(purchase),
            condominio_id: Uuid::nil(),
            machine_id: "m".into(),
            terminal_id: "t".into(),
            amount_cents: 100,
            idempotency_key: format!("key-{purchase}").into(),
            provider_ref: Some("ch".into()),
            execute_key: Some("exec-1".into()),
            cycle_id: None,
            status,
            created_at: 0,
            updated_at: 0,
        }))
    }

    #[test]
    fn a_probe_repeats_until_every_replica_serves_the_deploy_and_denies() {
        let world = World { serving: Cell::new(1), latest: 2 };
        let mut operator = operator();
        let command = Command::Probe { deploy: 2, condominiums: vec![1] };
        let [Output::Wake { at: 0, token }] = operator.command(command, 0, &world)[..] else { panic!("a wake-up now") };
        let denied = || Some(Reply::error(ErrorCode::CanaryNotAllowed, "denied"));
        let mut now = 0;
        for round in 0..2 {
            let outputs = operator.wake(token, &world);
            let [Output::Send(send)] = &outputs[..] else { panic!("one probe") };
            assert_eq!(send.endpoint, Endpoint::Authorize);
            assert_eq!(send.events(7)[1], Event::Probed { request: 7, condominium: 1 });
            // Denied, but a replica still serves deploy 1; then served, but admitted.
            let reply = if round == 1 { None } else { denied() };
            let outputs = operator.answered(token, reply, now, &world);
            assert_eq!(outputs, vec![Output::Wake { at: now + PROBE_EVERY, token }]);
            now += PROBE_EVERY;
            world.serving.set(2);
        }
        let _ = operator.wake(token, &world);
        assert!(operator.answered(token, denied(), now, &world).is_empty(), "denied everywhere: probing stops");
        assert!(operator.idle());
    }

    #[test]
    fn a_probe_gives_up_after_the_maximum_and_stops_for_a_newer_deploy() {
        let world = World { serving: Cell::new(0), latest: 2 };
        let mut operator = operator();
        let outputs = operator.command(Command::Probe { deploy: 2, condominiums: vec![0] }, 0, &world);
        let [Output::Wake { token, .. }] = outputs[..] else { panic!("a wake-up") };
        let mut probes = 0;
        while !operator.idle() {
            assert_eq!(sends(&operator.wake(token, &world)).len(), 1);
            probes += 1;
            let _ = operator.answered(token, None, 0, &world);
        }
        assert_eq!(probes, PROBES_MAX);
        let newer = World { serving: Cell::new(0), latest: 3 };
        let outputs = operator.command(Command::Probe { deploy: 2, condominiums: vec![0] }, 0, &newer);
        let [Output::Wake { token, .. }] = outputs[..] else { panic!("a wake-up") };
        assert!(operator.wake(token, &newer).is_empty() && operator.idle(), "a newer decision took over");
    }

    #[test]
    fn reprocess_retries_then_logs_one_support_ticket() {
        let world = World { serving: Cell::new(0), latest: 0 };
        let mut operator = operator();
        let outputs = operator.command(Command::Reprocess { purchases: vec![0, 5], asked: asked() }, 10, &world);
        let [send] = sends(&outputs)[..] else { panic!("one lookup: purchase 5 has no payment") };
        assert_eq!(send.request, Request::GetPayment(payment(0).to_string()));
        let token = send.token;
        let outputs = operator.answered(token, Some(view(0, PaymentStatus::Confirmed)), 20, &world);
        let execute =
            Request::ExecuteCycle(ExecuteRequest { payment_id: payment(0).to_string(), execute_key: "exec-1".into() });
        assert_eq!(sends(&outputs)[0].request, execute);
        let mut now = 20;
        for _ in 1..REPROCESS_ATTEMPTS_MAX {
            let failed = Some(Reply::error(ErrorCode::IotFailed, "no answer from the machine"));
            assert_eq!(
                operator.answered(token, failed, now, &world),
                vec![Output::Wake { at: now + REPROCESS_RETRY_EVERY, token }]
            );
            now += REPROCESS_RETRY_EVERY;
            assert_eq!(sends(&operator.wake(token, &world))[0].request, execute);
        }
        let outputs = operator.answered(token, None, now, &world);
        let [ticket] = decisions(&outputs)[..] else { panic!("one support ticket") };
        assert_eq!((ticket.kind, ticket.at, ticket.who.as_str()), (DecisionKind::Reprocess, now, "ops"));
        assert_eq!((ticket.previous, ticket.window_from), (Some(1), 500));
        let expected =
            format!("reprocess failed 3 times: support ticket for payment {}, execute_key exec-1", payment(0));
        assert_eq!(ticket.evidence, vec![expected]);
        assert!(operator.idle());
    }

    #[test]
    fn reprocess_stops_once_the_execution_is_answered() {
        let world = World { serving: Cell::new(0), latest: 0 };
        let mut operator = operator();
        let outputs = operator.command(Command::Reprocess { purchases: vec![1], asked: asked() }, 0, &world);
        let token = sends(&outputs)[0].token;
        let _ = operator.answered(token, Some(view(1, PaymentStatus::Confirmed)), 0, &world);
        assert!(operator.answered(token, Some(view(1, PaymentStatus::Executed)), 0, &world).is_empty());
        assert!(operator.idle());
    }

    /// Answers every query of an audit with no payments; returns all outputs.
    fn run_audit(operator: &mut Operator, mut outputs: Vec<Output>, world: &World) -> Vec<Output> {
        let mut all = Vec::new();
        while let Some(send) = sends(&outputs).first().map(|send| (*send).clone()) {
            assert!(send.read, "audit queries are reads");
            all.append(&mut outputs);
            outputs = operator.answered(send.token, Some(Reply::Payments(vec![])), 99, world);
        }
        all.append(&mut outputs);
        all
    }

    #[test]
    fn an_audit_queries_each_key_and_provider_ref_and_logs_one_line_per_suspect() {
        let world = World { serving: Cell::new(0), latest: 0 };
        let mut operator = operator();
        let first = operator.command(Command::Audit { purchases: vec![0, 1, 7], asked: asked() }, 50, &world);
        let outputs = run_audit(&mut operator, first, &world);
        let queries: Vec<&Request> = sends(&outputs).into_iter().map(|send| &send.request).collect();
        let expected = [
            Request::AuditByIdempotencyKey("key-0".into()),
            Request::AuditByProviderRef(format!("ch-{}-a", payment(0)).into()),
            Request::AuditByProviderRef("ch-b".into()),
            Request::AuditByIdempotencyKey("key-1".into()),
            Request::AuditByProviderRef(format!("ch-{}-a", payment(1)).into()),
            Request::AuditByProviderRef("ch-b".into()),
        ];
        assert_eq!(queries, expected.iter().collect::<Vec<_>>());
        let recorded = outputs.iter().filter(|output| matches!(output, Output::Record(_))).count();
        assert_eq!(recorded, expected.len(), "every answer is recorded");
        let [decision] = decisions(&outputs)[..] else { panic!("one audit decision") };
        assert_eq!(
            (decision.kind, decision.at, decision.previous, decision.window_from),
            (DecisionKind::Audit, 99, Some(1), 500)
        );
        assert_eq!(decision.evidence.len(), 2, "one line per suspect with a payment");
        assert!(
            decision.evidence[0]
                .starts_with("purchase 0: idempotency_key key-0 → 0 payment(s); 2 charge(s), 2 standing")
        );
        assert!(decision.evidence[1].ends_with("DUPLICATE confirmed"));
        assert!(operator.idle());
    }

    #[test]
    fn the_final_audit_reads_each_payment_once_then_each_charge() {
        let world = World { serving: Cell::new(0), latest: 0 };
        let mut operator = operator();
        let first = operator.final_audit((vec![payment(1), payment(0), payment(1)], vec!["ch-x".into()]), 0, &world);
        let outputs = run_audit(&mut operator, first, &world);
        let queries: Vec<&Request> = sends(&outputs).into_iter().map(|send| &send.request).collect();
        let expected = [
            Request::GetPayment(payment(0).to_string()),
            Request::GetPayment(payment(1).to_string()),
            Request::AuditByProviderRef("ch-x".into()),
        ];
        assert_eq!(queries, expected.iter().collect::<Vec<_>>());
        assert!(outputs.contains(&Output::Record(Event::Audited { payment: payment(0), status: None })));
        assert!(decisions(&outputs).is_empty(), "the final audit logs no decision");
    }
}
