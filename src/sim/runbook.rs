//! The runbook in the simulation: the controller's analysis ticks and the
//! operator's script, and the effects they ask for — rolling a deploy out,
//! probing denied condominiums after a rollback (§2, "authorize nos afetados
//! retorna canary_not_allowed"), auditing a suspected duplicate (§4C), and
//! reprocessing executions for customers who paid and got no wash (§4A).

use super::{Origin, Sim, SimEvent};
use crate::contract::{ChargeStatus, Endpoint, ErrorCode, ExecuteRequest, Reply, Request};
use crate::history::{Decision, DecisionKind, Event, NO_PURCHASE};
use crate::rollout::controller::Command;
use crate::rollout::controller::audit_line;
use crate::time::SECOND;

/// How often, and how many times, a denied condominium is probed.
const PROBE_EVERY: u64 = 10 * SECOND;
const PROBES_MAX: u16 = 90;
/// How often, and how many times, the operator retries a reprocess (§4A.3).
const REPROCESS_RETRY_EVERY: u64 = 2 * 60 * SECOND;
const REPROCESS_ATTEMPTS_MAX: u8 = 3;

/// One payment the operator is reprocessing.
pub(super) struct OperatorTask {
    purchase: u32,
    who: String,
    attempt: u8,
    execute: Option<ExecuteRequest>,
    /// The request in flight for it, if any.
    request: Option<u32>,
}

impl Sim<'_> {
    pub(super) fn analysis(&mut self) {
        let next = self.now + self.scenario.criteria.analysis_interval;
        if next <= self.horizon + self.scenario.drain {
            self.agenda.schedule(next, SimEvent::Analysis);
        }
        let commands = self.controller.tick(self.now, &mut self.history);
        self.carry_out(commands);
    }

    pub(super) fn operator_step(&mut self, index: u16) {
        let step = &self.scenario.operator[usize::from(index)];
        if let Some(every) = step.every {
            self.agenda.schedule(self.now + every, SimEvent::Operator { step: index });
        }
        let commands = self.controller.operator(step, self.now, &mut self.history);
        self.carry_out(commands);
    }

    pub(super) fn carry_out(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::RollOut { deploy } => self.roll_out(deploy),
                Command::Probe { deploy, condominiums } => {
                    for condominium in condominiums {
                        self.agenda.schedule(self.now, SimEvent::Probe { condominium, deploy, attempt: 0 });
                    }
                }
                Command::Audit { purchases, who } => self.audit_suspects(&purchases, &who),
                Command::Reprocess { purchases } => {
                    for purchase in purchases {
                        self.reprocess(purchase);
                    }
                }
            }
        }
    }

    /// posim asks `authorize` for a condominium the latest rollback denies.
    pub(super) fn probe(&mut self, condominium: u32, deploy: u16, attempt: u16) {
        if deploy != self.latest_deploy {
            return; // a newer decision took over
        }
        let request = crate::rollout::probe_request(&self.scenario.fleet, condominium, deploy, u32::from(attempt));
        let id = self.new_request(NO_PURCHASE, Endpoint::Authorize, 1, false, None);
        self.record(Event::sent_by_posim(id, Endpoint::Authorize));
        self.record(Event::Probed { request: id, condominium });
        self.probes.insert(id, (condominium, deploy, attempt));
        self.start_operation(request, Origin::Probe(id), Some(condominium));
    }

    /// Probing stops once every replica serves the deploy and the answer is a denial.
    pub(super) fn probe_answered(&mut self, request: u32, reply: &Reply) {
        let Some((condominium, deploy, attempt)) = self.probes.remove(&request) else { return };
        let everywhere = self.replicas.iter().all(|replica| replica.serving && replica.config == deploy);
        let denied = reply.error_code() == Some(ErrorCode::CanaryNotAllowed);
        if !(everywhere && denied) && attempt + 1 < PROBES_MAX {
            let next = SimEvent::Probe { condominium, deploy, attempt: attempt + 1 };
            self.agenda.schedule(self.now + PROBE_EVERY, next);
        }
    }

    /// §4C: audit each suspect by provider_ref and idempotency_key through the
    /// stack, and count its physical effect in the machines' logs.
    fn audit_suspects(&mut self, purchases: &[u32], who: &str) {
        let stack =
            crate::stack::Stack::new(crate::contract::CanaryConfig::off(), self.scenario.stack.settings, self.bugs);
        let mut evidence = Vec::new();
        for &purchase in purchases {
            let state = &self.purchases[purchase as usize];
            let Some(payment) = state.payment_id else { continue };
            let key = state.idempotency_key.clone();
            let by_key = match self.read_direct(&stack, Request::AuditByIdempotencyKey(key.clone())) {
                Reply::Payments(views) => views.iter().map(|view| view.payment_id).collect(),
                _ => Vec::new(),
            };
            self.record(Event::AuditedKey { idempotency_key: key.clone(), payments: by_key.clone() });
            let charges = self.world.psp.for_payment(payment);
            let standing = charges.iter().filter(|charge| charge.status == ChargeStatus::Captured).count();
            for charge in &charges {
                let by_ref = match self.read_direct(&stack, Request::AuditByProviderRef(charge.provider_ref.clone())) {
                    Reply::Payments(views) => views.iter().map(|view| view.payment_id).collect(),
                    _ => Vec::new(),
                };
                self.record(Event::AuditedCharge { provider_ref: charge.provider_ref.clone(), payments: by_ref });
            }
            let cycles = self.controller.index.cycles_of(payment);
            evidence.push(audit_line(purchase, &key, by_key.len(), charges.len(), standing, cycles as usize));
        }
        let window_from = self.history.decisions.last().map_or(0, |d| d.at);
        let decision = Decision {
            at: self.now,
            who: who.to_string(),
            kind: DecisionKind::Audit,
            deploy: None,
            previous: Some(self.latest_deploy),
            window_from,
            evidence,
            criteria: Vec::new(),
        };
        self.history.add_decision(decision);
    }

    /// §4A: look the payment up (payment_id, execute_key), then execute again.
    fn reprocess(&mut self, purchase: u32) {
        let Some(payment) = self.purchases[purchase as usize].payment_id else { return };
        let who =
            self.scenario.operator.iter().find(|s| matches!(s.action, crate::scenario::OperatorAction::Reprocess));
        let who = who.map_or("operator".to_string(), |step| step.who.clone());
        self.operator_tasks.push(OperatorTask { purchase, who, attempt: 0, execute: None, request: None });
        let task = (self.operator_tasks.len() - 1) as u32;
        self.operator_send(task, Request::GetPayment(payment.to_string()), Endpoint::GetPayment);
    }

    fn operator_send(&mut self, task: u32, request: Request, endpoint: Endpoint) {
        let id = self.new_request(NO_PURCHASE, endpoint, 1, false, None);
        self.record(Event::sent_by_posim(id, endpoint));
        self.operator_tasks[task as usize].request = Some(id);
        let condominium = Some(self.purchases[self.operator_tasks[task as usize].purchase as usize].condominium);
        self.start_operation(request, Origin::Operator(id), condominium);
    }

    pub(super) fn operator_answered(&mut self, request: u32, reply: Reply) {
        let Some(task) = self.operator_tasks.iter().position(|t| t.request == Some(request)) else { return };
        self.operator_tasks[task].request = None;
        let task = task as u32;
        match reply {
            Reply::Payment(view) if view.status == crate::contract::PaymentStatus::Confirmed => {
                let Some(execute_key) = view.execute_key.clone() else { return };
                let execute = ExecuteRequest { payment_id: view.payment_id.to_string(), execute_key };
                self.operator_tasks[task as usize].execute = Some(execute.clone());
                self.operator_send(task, Request::ExecuteCycle(execute), Endpoint::ExecuteCycle);
            }
            Reply::Error { code, .. } if code.retryable() => self.operator_failed(task),
            _ => {} // executed, compensated, expired, or a refusal: nothing more to do
        }
    }

    fn operator_failed(&mut self, task: u32) {
        let state = &mut self.operator_tasks[task as usize];
        state.attempt += 1;
        if state.attempt < REPROCESS_ATTEMPTS_MAX && state.execute.is_some() {
            self.agenda.schedule(self.now + REPROCESS_RETRY_EVERY, SimEvent::OperatorRetry { task });
            return;
        }
        // §4A.3: failed repeatedly — open a support ticket with the ids.
        let purchase = state.purchase;
        let key = state.execute.as_ref().map_or("?".to_string(), |e| e.execute_key.to_string());
        let payment = self.purchases[purchase as usize].payment_id.map_or("?".to_string(), |p| p.to_string());
        let evidence = vec![format!(
            "reprocess failed {} times: support ticket for payment {payment}, execute_key {key}",
            state.attempt
        )];
        let decision = Decision {
            at: self.now,
            who: state.who.clone(),
            kind: DecisionKind::Reprocess,
            deploy: None,
            previous: Some(self.latest_deploy),
            window_from: self.now,
            evidence,
            criteria: Vec::new(),
        };
        self.history.add_decision(decision);
    }

    pub(super) fn operator_retry(&mut self, task: u32) {
        let Some(execute) = self.operator_tasks[task as usize].execute.clone() else { return };
        self.operator_send(task, Request::ExecuteCycle(execute), Endpoint::ExecuteCycle);
    }
}
