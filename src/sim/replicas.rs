//! The stack's side of the simulation: replicas that deploy in rolling
//! restarts and crash between effects, a load balancer in front of them, and
//! the driver that resolves the core's effects against the store, the PSP
//! ledger and the machines — with the planned faults at each boundary.

use std::rc::Rc;

use super::{InFlightCommand, OpSlot, Origin, Sim, SimEvent};
use crate::contract::{Reply, Request, StartCycleCommand};
use crate::faults::{Boundary, Crossing, FaultKind};
use crate::history::{DownCause, Event};
use crate::stack::core::{Effect, Input, IotCall, IotOutcome, PspCall, PspOutcome};
use crate::stack::store::Store as _;
use crate::stack::{Stack, StackBug};
use crate::world::machines::CommandAnswer;
use crate::world::psp::RefundOutcome;

impl Sim<'_> {
    /// Rolls a decided deploy out: all at once at the start, then replica by replica.
    pub(super) fn roll_out(&mut self, deploy: u16) {
        let info = &self.history.deploys[usize::from(deploy)];
        let stack = Stack::new(info.canary.clone(), self.scenario.stack.settings, self.bugs);
        assert_eq!(usize::from(deploy), self.stacks.len(), "deploys are rolled out in order");
        self.stacks.push(Rc::new(stack));
        self.latest_deploy = deploy;
        if deploy == 0 {
            for replica in 0..self.replicas.len() as u16 {
                self.bring_up(replica, 0);
            }
        } else {
            self.agenda.schedule(self.now, SimEvent::DeployStep { config: deploy, replica: 0 });
        }
    }

    /// Rolling deploy: one replica at a time leaves the balancer and restarts.
    pub(super) fn deploy_step(&mut self, config: u16, replica: u16) {
        if config != self.latest_deploy || usize::from(replica) >= self.replicas.len() {
            return; // finished, or overtaken by a newer deploy
        }
        self.replicas[usize::from(replica)].serving = false;
        self.record(Event::ReplicaDown { replica, cause: DownCause::Deploy });
        let at = self.now + self.scenario.stack.restart;
        self.agenda.schedule(at, SimEvent::ReplicaRestarted { config, replica });
    }

    pub(super) fn replica_restarted(&mut self, config: u16, replica: u16) {
        self.bring_up(replica, config);
        self.agenda.schedule(self.now, SimEvent::DeployStep { config, replica: replica + 1 });
    }

    pub(super) fn replica_recovered(&mut self, replica: u16, incarnation: u32) {
        let current = &self.replicas[usize::from(replica)];
        if current.incarnation == incarnation && !current.serving {
            let config = current.config;
            self.bring_up(replica, config);
        }
    }

    /// A fresh process with `config`: whatever the old one had in flight is gone.
    fn bring_up(&mut self, replica: u16, config: u16) {
        let slot = &mut self.replicas[usize::from(replica)];
        slot.stack = Rc::clone(&self.stacks[usize::from(config)]);
        slot.config = config;
        slot.incarnation += 1;
        slot.serving = true;
        if self.bugs.has(StackBug::StateLostOnRedeploy) && self.now > 0 {
            self.store.clear();
        }
        self.record(Event::ReplicaUp { replica, config });
    }

    fn crash(&mut self, replica: u16, fault: u16, serial: u64) {
        let downtime = self.faults.faults()[usize::from(fault)].duration;
        self.record(Event::Fault { fault, kind: FaultKind::ReplicaCrash, subject: serial });
        self.record(Event::ReplicaDown { replica, cause: DownCause::Crash });
        let slot = &mut self.replicas[usize::from(replica)];
        slot.serving = false;
        slot.incarnation += 1;
        let incarnation = slot.incarnation;
        self.agenda.schedule(self.now + downtime, SimEvent::ReplicaRecovered { replica, incarnation });
    }

    /// Round robin over the replicas that serve.
    fn pick_replica(&mut self) -> Option<u16> {
        let count = self.replicas.len();
        (0..count).map(|offset| (self.lb_cursor + offset) % count).find(|&i| self.replicas[i].serving).map(|i| {
            self.lb_cursor = i + 1;
            i as u16
        })
    }

    /// A request reaches the balancer: start it on a replica, or answer 503.
    pub(super) fn start_operation(&mut self, request: Request, origin: Origin, condominium: Option<u32>) {
        self.stack_requests += 1;
        let request_id = origin.request();
        let Some(replica) = self.pick_replica() else {
            let reply = Reply::error(crate::contract::ErrorCode::Unavailable, "no replica is serving");
            return self.answer(origin, reply);
        };
        let stack = Rc::clone(&self.replicas[usize::from(replica)].stack);
        let config = self.replicas[usize::from(replica)].config;
        self.record(Event::Received { request: request_id, replica, config });
        self.op_serial += 1;
        if self.bad_build_fails(replica, &request) {
            let reply = Reply::error(crate::contract::ErrorCode::Unavailable, "the build failed this request");
            return self.answer(origin, reply);
        }
        let (operation, effect) = stack.start(request, self.now, &mut self.ids);
        let slot = Box::new(OpSlot {
            operation,
            stack,
            replica,
            incarnation: self.replicas[usize::from(replica)].incarnation,
            origin,
            condominium,
            serial: self.op_serial,
            step: 0,
            pending: None,
        });
        let index = match self.free_ops.pop() {
            Some(index) => index,
            None => {
                self.ops.push(None);
                (self.ops.len() - 1) as u32
            }
        };
        self.drive(index, slot, effect);
    }

    pub(super) fn resume(&mut self, op: u32, serial: u64) {
        let Some(mut slot) = self.ops[op as usize].take() else { return };
        if slot.serial != serial {
            self.ops[op as usize] = Some(slot);
            return;
        }
        if self.replicas[usize::from(slot.replica)].incarnation != slot.incarnation {
            self.free_ops.push(op); // the process that ran it is gone
            return;
        }
        let input = slot.pending.take().expect("a resumed operation has an input");
        let stack = Rc::clone(&slot.stack);
        let effect = stack.resume(&mut slot.operation, input, self.now, &mut self.ids);
        self.drive(op, slot, effect);
    }

    fn crossing(&self, slot: &OpSlot) -> Crossing {
        Crossing { now: self.now, phase: self.controller.phase(), condominium: slot.condominium, endpoint: None }
    }

    /// A bad build fails its share of confirm and execute-cycle requests
    /// before they reach the domain logic.
    fn bad_build_fails(&self, replica: u16, request: &Request) -> bool {
        let deploy = self.replicas[usize::from(replica)].config;
        let rate = self.history.deploys[usize::from(deploy)].bad_build_error_rate;
        let exposed = matches!(request, Request::Confirm(_) | Request::ExecuteCycle(_));
        exposed && rate > 0.0 && self.bad_build.unit([self.op_serial, u64::from(deploy), 0]) < rate
    }

    /// Resolves effects until one has to wait for the network, or the reply.
    fn drive(&mut self, index: u32, mut slot: Box<OpSlot>, mut effect: Effect) {
        loop {
            slot.step += 1;
            match effect {
                Effect::Store(op) => {
                    let crossing = self.crossing(&slot);
                    let ids = [slot.serial, u64::from(slot.step), 0];
                    if let Some((fault, _)) = self.faults.roll(Boundary::Replica, &crossing, ids) {
                        self.crash(slot.replica, fault, slot.serial);
                        self.free_ops.push(index);
                        return;
                    }
                    let result = self.store.apply(op, self.now);
                    let stack = Rc::clone(&slot.stack);
                    effect = stack.resume(&mut slot.operation, Input::Store(result), self.now, &mut self.ids);
                }
                Effect::Psp(call) => {
                    let (outcome, delay) = self.psp_call(&slot, call);
                    self.park(index, slot, Input::Psp(outcome), delay);
                    return;
                }
                Effect::Iot(IotCall::FindCycles { machine_id, execute_key }) => {
                    let (outcome, delay) = self.find_cycles(&slot, &machine_id, &execute_key);
                    self.park(index, slot, Input::Iot(outcome), delay);
                    return;
                }
                Effect::Iot(IotCall::StartCycle(command)) => {
                    self.send_command(index, &slot, command);
                    self.ops[index as usize] = Some(slot);
                    return;
                }
                Effect::Reply(reply) => {
                    self.free_ops.push(index);
                    return self.answer(slot.origin, reply);
                }
            }
        }
    }

    /// Keeps the operation until its input arrives `delay` from now.
    fn park(&mut self, index: u32, mut slot: Box<OpSlot>, input: Input, delay: u64) {
        slot.pending = Some(input);
        let serial = slot.serial;
        self.ops[index as usize] = Some(slot);
        self.agenda.schedule(self.now + delay, SimEvent::Resume { op: index, serial });
    }

    fn psp_call(&mut self, slot: &OpSlot, call: PspCall) -> (PspOutcome, u64) {
        let settings = &self.scenario.stack;
        let round_trip = self.latency(self.scenario.latency.stack_psp);
        let crossing = self.crossing(slot);
        let fault = self.faults.roll(Boundary::StackToPsp, &crossing, [slot.serial, u64::from(slot.step), 0]);
        if let Some((index, spec)) = fault {
            let kind = spec.kind;
            self.record(Event::Fault { fault: index, kind, subject: slot.serial });
            if kind == FaultKind::PspTimeout {
                return (PspOutcome::Unavailable, settings.psp_timeout);
            }
            return (PspOutcome::Unavailable, round_trip.min(settings.psp_timeout));
        }
        let outcome = match call {
            PspCall::GetCharge(provider_ref) => PspOutcome::Charge(self.psp.get(&provider_ref)),
            PspCall::ChargesForPayment(payment) => PspOutcome::Charges(self.psp.for_payment(payment)),
            PspCall::Refund { provider_ref, idempotency_key } => match self.psp.refund(&provider_ref, &idempotency_key)
            {
                RefundOutcome::Refunded(new) => {
                    if new {
                        let payment = self.psp.get(&provider_ref).map(|charge| charge.payment_id).unwrap_or_default();
                        self.record(Event::Refunded { payment, provider_ref });
                    }
                    PspOutcome::Refunded
                }
                RefundOutcome::AlreadyRefunded => PspOutcome::AlreadyRefunded,
                RefundOutcome::NotFound | RefundOutcome::NotCaptured => PspOutcome::Unavailable,
            },
        };
        if round_trip > settings.psp_timeout {
            return (PspOutcome::Unavailable, settings.psp_timeout);
        }
        (outcome, round_trip)
    }

    fn find_cycles(&mut self, slot: &OpSlot, machine_id: &str, execute_key: &str) -> (IotOutcome, u64) {
        let timeout = self.scenario.stack.settings.iot_timeout;
        let round_trip = self.latency(self.scenario.latency.stack_iot);
        let crossing = self.crossing(slot);
        let fault = self.faults.roll(Boundary::StackToIot, &crossing, [slot.serial, u64::from(slot.step), 1]);
        let Some(&machine) = self.machine_index.get(machine_id) else { return (IotOutcome::NoAnswer, timeout) };
        if let Some((index, spec)) = fault {
            let kind = spec.kind;
            self.record(Event::Fault { fault: index, kind, subject: slot.serial });
            return (IotOutcome::NoAnswer, timeout);
        }
        if round_trip > timeout || !self.machines[machine as usize].is_reachable(self.now) {
            return (IotOutcome::NoAnswer, timeout);
        }
        (IotOutcome::Cycles(self.machines[machine as usize].cycles(execute_key)), round_trip)
    }

    /// A start command leaves the stack; the machine acts when it arrives.
    fn send_command(&mut self, index: u32, slot: &OpSlot, command: StartCycleCommand) {
        let timeout = self.scenario.stack.settings.iot_timeout;
        let round_trip = self.latency(self.scenario.latency.stack_iot);
        let crossing = self.crossing(slot);
        let fault = self.faults.roll(Boundary::StackToIot, &crossing, [slot.serial, u64::from(slot.step), 0]);
        let fault = fault.map(|(fault_index, spec)| (fault_index, spec.kind, spec.duration));
        let machine = self.machine_index.get(&command.machine_id).copied();
        if let Some((fault_index, kind, duration)) = fault {
            self.record(Event::Fault { fault: fault_index, kind, subject: slot.serial });
            if let (FaultKind::MachineOffline, Some(machine)) = (kind, machine) {
                self.machines[machine as usize].go_offline(self.now + duration);
            }
        }
        let kind = fault.map(|(_, kind, _)| kind);
        // A lost command reaches no machine: the stack waits out its timeout.
        let (machine, arrives_after, round_trip) = match machine {
            Some(machine) if kind != Some(FaultKind::IotCommandLost) => (machine, round_trip / 2, round_trip),
            _ => (u32::MAX, timeout, timeout),
        };
        let in_flight = InFlightCommand {
            command,
            machine,
            fault: kind,
            op: index,
            serial: slot.serial,
            sent_at: self.now,
            round_trip,
        };
        self.commands.push(in_flight);
        let command = (self.commands.len() - 1) as u32;
        self.agenda.schedule(self.now + arrives_after, SimEvent::AtMachine { command });
    }

    /// The command reaches the machine (even if the replica that sent it died).
    pub(super) fn at_machine(&mut self, command_id: u32) {
        let timeout = self.scenario.stack.settings.iot_timeout;
        let in_flight = &self.commands[command_id as usize];
        let (op, serial, sent_at, round_trip, fault) =
            (in_flight.op, in_flight.serial, in_flight.sent_at, in_flight.round_trip, in_flight.fault);
        let outcome = if in_flight.machine == u32::MAX {
            IotOutcome::NoAnswer
        } else {
            let machine = in_flight.machine;
            let command = in_flight.command.clone();
            let cycle_length = self.latency(self.scenario.traffic.cycle_length);
            let answer = self.machines[machine as usize].command(&command, self.now, cycle_length);
            if let CommandAnswer::Started(cycle) = &answer {
                let (payment, execute_key, cycle) = (command.payment_id, command.execute_key.clone(), cycle.clone());
                self.record(Event::CycleStarted { machine, payment, execute_key, cycle });
            }
            match (fault, answer) {
                (Some(FaultKind::IotAckLost), _) => IotOutcome::NoAnswer,
                (Some(FaultKind::Gateway504), _) => IotOutcome::GatewayTimeout,
                (_, CommandAnswer::Started(cycle)) => IotOutcome::Started(cycle),
                (_, CommandAnswer::AlreadyStarted(cycle)) => IotOutcome::AlreadyStarted(cycle),
                (_, CommandAnswer::Busy) => IotOutcome::Busy,
                (_, CommandAnswer::Offline) => IotOutcome::Offline,
            }
        };
        let answered_at = match outcome {
            IotOutcome::NoAnswer => sent_at + timeout,
            _ if round_trip > timeout => sent_at + timeout,
            _ => sent_at + round_trip,
        };
        let outcome = if round_trip > timeout { IotOutcome::NoAnswer } else { outcome };
        let Some(slot) = self.ops[op as usize].as_mut().filter(|slot| slot.serial == serial) else { return };
        slot.pending = Some(Input::Iot(outcome));
        self.agenda.schedule(answered_at.max(self.now), SimEvent::Resume { op, serial });
    }
}
