//! The runbook in the simulation: the controller's analysis ticks and the
//! operator's script, and a thin shell that carries out what they ask for —
//! rollouts here, and probes, audits and reprocessing through the sans-IO
//! [`Operator`], on the agenda and against the simulated stack.

use std::collections::VecDeque;

use uuid::Uuid;

use super::{Origin, Replica, Sim, SimEvent};
use crate::contract::{Charge, Reply, Request};
use crate::history::NO_PURCHASE;
use crate::judge::index::HistoryIndex;
use crate::operator::{self, Facts, Operator, Output, Paid, Token};
use crate::rollout::controller::Command;
use crate::stack::Stack;
use crate::stack::core::{Effect, Input};
use crate::stack::store::Store as _;
use crate::time::Millis;
use crate::world::PspLedger;

/// What the operator reads off the simulated world.
struct SimFacts<'a> {
    purchases: &'a super::Purchases,
    psp: &'a PspLedger,
    index: &'a HistoryIndex,
    replicas: &'a [Replica],
    latest_deploy: u16,
}

impl Facts for SimFacts<'_> {
    fn paid(&self, purchase: u32) -> Option<Paid> {
        let state = self.purchases.get(purchase as usize)?;
        let payment = state.payment_id?;
        let (idempotency_key, condominium) = (state.idempotency_key.clone(), Some(state.condominium));
        Some(Paid { payment, idempotency_key, condominium })
    }

    fn charges(&self, payment: Uuid) -> Vec<Charge> {
        self.psp.for_payment(payment)
    }

    fn cycles(&self, payment: Uuid) -> usize {
        self.index.cycles_of(payment) as usize
    }

    fn latest_deploy(&self) -> u16 {
        self.latest_deploy
    }

    fn serves_everywhere(&self, deploy: u16) -> bool {
        self.replicas.iter().all(|replica| replica.serving && replica.config == deploy)
    }
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

    pub(super) fn inject(&mut self, index: u16) {
        let injection = &self.scenario.inject[usize::from(index)];
        let commands = self.controller.inject(injection, self.now, &mut self.history);
        self.carry_out(commands);
    }

    pub(super) fn carry_out(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::RollOut { deploy } => self.roll_out(deploy),
                command => self.operate(|operator, facts, now| operator.command(command, now, facts)),
            }
        }
    }

    pub(super) fn operator_wake(&mut self, token: Token) {
        self.operate(|operator, facts, _| operator.wake(token, facts));
    }

    /// The stack answered a request the operator sent.
    pub(super) fn operator_answered(&mut self, request: u32, reply: Reply) {
        let token = self.operator_requests.remove(&request).expect("the operator sent it");
        self.operate(|operator, facts, now| operator.answered(token, Some(reply), now, facts));
    }

    /// After the drain: the final audit, read straight from the store.
    pub(super) fn audit(&mut self) {
        let payments = self.purchases.iter().filter_map(|p| p.payment_id).collect();
        let charges = operator::captured_charges(&self.history);
        self.operate(|operator, facts, now| operator.final_audit((payments, charges), now, facts));
    }

    /// Feeds the operator one input and carries out what it asks, depth
    /// first: a read answered from the store is fed back at once.
    fn operate(&mut self, input: impl FnOnce(&mut Operator, &SimFacts, Millis) -> Vec<Output>) {
        let mut outputs: VecDeque<Output> = self.feed(input).into();
        let reader = Stack::new(crate::contract::CanaryConfig::off(), self.scenario.stack.settings, self.bugs);
        while let Some(output) = outputs.pop_front() {
            match output {
                Output::Send(send) if send.read => {
                    let reply = self.read_direct(&reader, send.request);
                    let more = self.feed(|operator, facts, now| operator.answered(send.token, Some(reply), now, facts));
                    more.into_iter().rev().for_each(|output| outputs.push_front(output));
                }
                Output::Send(send) => {
                    let id = self.new_request(NO_PURCHASE, send.endpoint, 1, 0, None);
                    send.events(id).into_iter().for_each(|event| self.record(event));
                    self.operator_requests.insert(id, send.token);
                    self.start_operation(send.request, Origin::Operator(id), send.condominium);
                }
                Output::Wake { at, token } => self.agenda.schedule(at, SimEvent::OperatorWake { token }),
                Output::Record(event) => self.record(event),
                Output::Decide(decision) => {
                    self.history.add_decision(decision);
                }
            }
        }
    }

    fn feed(&mut self, input: impl FnOnce(&mut Operator, &SimFacts, Millis) -> Vec<Output>) -> Vec<Output> {
        let facts = SimFacts {
            purchases: &self.purchases,
            psp: &self.world.psp,
            index: &self.controller.index,
            replicas: &self.replicas,
            latest_deploy: self.latest_deploy,
        };
        input(&mut self.operator, &facts, self.now)
    }

    /// Runs a read-only request against the store, without network or faults.
    fn read_direct(&mut self, stack: &Stack, request: Request) -> Reply {
        let (mut operation, mut effect) = stack.start(request, self.now, &mut self.ids);
        loop {
            match effect {
                Effect::Store(op) => {
                    let result = self.store.apply(op, self.now);
                    effect = stack.resume(&mut operation, Input::Store(result), self.now, &mut self.ids);
                }
                Effect::Reply(reply) => return reply,
                other => panic!("a read asked for {other:?}"),
            }
        }
    }
}
