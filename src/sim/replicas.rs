//! The stack's side of the simulation: replicas that deploy in rolling
//! restarts and crash between effects, a load balancer in front of them, and
//! the driver that resolves the core's effects against the store, the PSP
//! ledger and the machines — with the planned faults at each boundary.

use std::rc::Rc;

use super::{InFlightCommand, Leg, OpSlot, Origin, Sim, SimEvent};
use crate::contract::{Reply, Request, StartCycleCommand};
use crate::faults::{Boundary, Crossing, FaultKey, FaultKind};
use crate::history::{DecisionKind, DownCause, Event, served_events};
use crate::scenario::phases::BadBuild;
use crate::stack::core::{Effect, Input, IotCall, IotOutcome, PspCall, PspOutcome};
use crate::stack::store::Store as _;
use crate::stack::{Stack, StackBug};
use crate::world::calls::Called;
use crate::world::gateway::{CyclesAnswer, GatewayAnswer, Route};
use crate::world::outcomes::{AtMachine, Fired, Truth};
use crate::world::psp::{PspAnswer, PspRequest, RefundOutcome};

impl Sim<'_> {
    /// Rolls a decided deploy out: all at once at the start, then replica by replica.
    pub(super) fn roll_out(&mut self, deploy: u16) {
        let info = &self.history.deploys[usize::from(deploy)];
        let stack = Stack::new(info.canary.clone(), self.scenario.stack.settings, self.bugs);
        assert_eq!(usize::from(deploy), self.stacks.len(), "deploys are rolled out in order");
        self.stacks.push(Rc::new(stack));
        let build = self.build_of(deploy);
        self.builds.push(build);
        self.latest_deploy = deploy;
        if deploy == 0 {
            for replica in 0..self.replicas.len() as u16 {
                self.bring_up(replica, 0);
            }
        } else {
            self.agenda.schedule(self.now, SimEvent::DeployStep { config: deploy, replica: 0 });
        }
    }

    /// A deploy's per-endpoint bad build, as the controller carries
    /// `bad_build_error_rate`: a phase's deploy brings its phase's build, an
    /// operator's deploy keeps the build serving, a rollback restores a good one.
    fn build_of(&self, deploy: u16) -> BadBuild {
        let decision = self.history.decisions.iter().rev().find(|decision| decision.deploy == Some(deploy));
        match decision.map(|decision| (decision.kind, decision.previous)) {
            Some((DecisionKind::Start | DecisionKind::Advance, _)) => {
                let phase = self.history.deploys[usize::from(deploy)].phase;
                self.scenario.phases.get(usize::from(phase)).map_or_else(BadBuild::default, |phase| phase.bad_build)
            }
            Some((DecisionKind::Deploy, Some(previous))) => {
                self.builds.get(usize::from(previous)).copied().unwrap_or_default()
            }
            _ => BadBuild::default(),
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
        slot.paused_until = 0;
        if self.bugs.has(StackBug::StateLostOnRedeploy) && self.now > 0 {
            self.store.clear();
        }
        self.record(Event::ReplicaUp { replica, config });
        self.set_clock(replica);
    }

    fn crash(&mut self, replica: u16, fault: u16, (serial, step): (u64, u32)) {
        let downtime = self.faults.faults()[usize::from(fault)].duration;
        let key = FaultKey::Operation { serial, step };
        self.record(Event::Fault { fault, kind: FaultKind::ReplicaCrash, key });
        self.record(Event::ReplicaDown { replica, cause: DownCause::Crash });
        self.take_down(replica, self.now.saturating_add(downtime));
    }

    /// The replica's process is gone; a fresh one starts at `back`.
    pub(super) fn take_down(&mut self, replica: u16, back: crate::time::Millis) {
        let slot = &mut self.replicas[usize::from(replica)];
        slot.serving = false;
        slot.incarnation += 1;
        let incarnation = slot.incarnation;
        self.agenda.schedule(back, SimEvent::ReplicaRecovered { replica, incarnation });
    }

    /// Round robin over the replicas that serve.
    fn pick_replica(&mut self) -> Option<u16> {
        let count = self.replicas.len();
        (0..count).map(|offset| (self.lb_cursor + offset) % count).find(|&i| self.ready(i)).map(|i| {
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
        let now = self.clock_of(replica);
        let (operation, effect) = stack.start(request, now, &mut self.ids);
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
            held: None,
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

    /// The operation parked at `op`, if it is still the one of `serial` and
    /// the process that ran it still lives (else its slot is freed).
    pub(super) fn take_parked(&mut self, op: u32, serial: u64) -> Option<Box<OpSlot>> {
        let slot = self.ops[op as usize].take()?;
        if slot.serial != serial {
            self.ops[op as usize] = Some(slot);
            return None;
        }
        if self.replicas[usize::from(slot.replica)].incarnation != slot.incarnation {
            self.free_ops.push(op); // the process that ran it is gone
            return None;
        }
        Some(slot)
    }

    pub(super) fn resume(&mut self, op: u32, serial: u64) {
        let Some(mut slot) = self.take_parked(op, serial) else { return };
        let paused_until = self.replicas[usize::from(slot.replica)].paused_until;
        if paused_until > self.now {
            // The answer waits in the socket until the replica runs again.
            self.ops[op as usize] = Some(slot);
            return self.agenda.schedule(paused_until, SimEvent::Resume { op, serial });
        }
        let input = slot.pending.take().expect("a resumed operation has an input");
        let stack = Rc::clone(&slot.stack);
        let now = self.clock_of(slot.replica);
        let effect = stack.resume(&mut slot.operation, input, now, &mut self.ids);
        self.drive(op, slot, effect);
    }

    /// Where an operation's step crosses a replica boundary (fault scopes).
    pub(super) fn crossing(&self, slot: &OpSlot) -> Crossing {
        Crossing {
            now: self.now,
            phase: self.controller.phase(),
            condominium: slot.condominium,
            endpoint: None,
            world: None,
        }
    }

    /// A bad build fails its share of confirm and execute-cycle requests
    /// before they reach the domain logic.
    fn bad_build_fails(&self, replica: u16, request: &Request) -> bool {
        let deploy = self.replicas[usize::from(replica)].config;
        let rate = self.history.deploys[usize::from(deploy)].bad_build_error_rate;
        let exposed = matches!(request, Request::Confirm(_) | Request::ExecuteCycle(_));
        if exposed && rate > 0.0 && self.bad_build.unit([self.op_serial, u64::from(deploy), 0]) < rate {
            return true;
        }
        // The per-endpoint build: a roll of its own (third id 1), drawn only
        // when its rate is above zero, so that runs without it do not change.
        let build = self.builds.get(usize::from(deploy)).copied().unwrap_or_default();
        let rate = match request {
            Request::Confirm(_) => build.confirm_failure_rate,
            Request::ExecuteCycle(_) => build.execute_failure_rate,
            _ => 0.0,
        };
        rate > 0.0 && self.bad_build.unit([self.op_serial, u64::from(deploy), 1]) < rate
    }

    /// Whether a bad build sends this start command twice (third id 2; no
    /// roll at a zero rate).
    fn bad_build_doubles(&self, slot: &OpSlot) -> bool {
        let deploy = self.replicas[usize::from(slot.replica)].config;
        let rate = self.builds.get(usize::from(deploy)).map_or(0.0, |build| build.duplicate_rate);
        rate > 0.0 && self.bad_build.unit([slot.serial, u64::from(deploy), 2]) < rate
    }

    /// Resolves effects until one has to wait for the network, or the reply.
    /// Each effect is a step: a paused replica holds it (see `nemesis`).
    fn drive(&mut self, index: u32, mut slot: Box<OpSlot>, mut effect: Effect) {
        loop {
            slot.step += 1;
            if let Some(until) = self.paused(&slot) {
                return self.hold(index, slot, effect, until);
            }
            match self.resolve(index, slot, effect) {
                Some((next_slot, next)) => (slot, effect) = (next_slot, next),
                None => return,
            }
        }
    }

    /// Carries out an effect already counted as a step (one a pause held),
    /// then drives on.
    pub(super) fn carry_on(&mut self, index: u32, slot: Box<OpSlot>, effect: Effect) {
        if let Some((slot, next)) = self.resolve(index, slot, effect) {
            self.drive(index, slot, next);
        }
    }

    /// Carries out one effect. A store call answers at once and the next
    /// effect comes back; anything else waits, or replies, and hands the
    /// operation on.
    fn resolve(&mut self, index: u32, mut slot: Box<OpSlot>, effect: Effect) -> Option<(Box<OpSlot>, Effect)> {
        match effect {
            Effect::Store(op) => {
                let crossing = self.crossing(&slot);
                let key = FaultKey::Operation { serial: slot.serial, step: slot.step };
                if let Some((fault, spec)) = self.faults.roll(Boundary::Replica, &crossing, key) {
                    let (kind, duration) = (spec.kind, spec.duration);
                    if kind == FaultKind::ReplicaCrash {
                        self.crash(slot.replica, fault, (slot.serial, slot.step));
                        self.free_ops.push(index);
                        return None;
                    }
                    self.record(Event::Fault { fault, kind, key });
                    if kind == FaultKind::StoreError {
                        self.store_failed(index, slot);
                        return None;
                    }
                    // A slow store: the write lands now, the answer comes late.
                    let result = self.store.apply(op, self.now);
                    self.park(index, slot, Input::Store(result), duration);
                    return None;
                }
                if self.database_down() {
                    self.store_failed(index, slot);
                    return None;
                }
                let result = self.store.apply(op, self.now);
                let stack = Rc::clone(&slot.stack);
                let now = self.clock_of(slot.replica);
                let next = stack.resume(&mut slot.operation, Input::Store(result), now, &mut self.ids);
                Some((slot, next))
            }
            Effect::Psp(call) => {
                let (outcome, delay) = self.psp_call(call);
                self.park(index, slot, Input::Psp(outcome), delay);
                None
            }
            Effect::Iot(IotCall::FindCycles { machine_id, execute_key }) => {
                let (outcome, delay) = self.find_cycles(&machine_id, &execute_key);
                self.park(index, slot, Input::Iot(outcome), delay);
                None
            }
            Effect::Iot(IotCall::StartCycle(command)) => {
                match self.send_command(index, &slot, command) {
                    Some((outcome, delay)) => self.park(index, slot, Input::Iot(outcome), delay),
                    None => self.ops[index as usize] = Some(slot),
                }
                None
            }
            Effect::Reply(reply) => {
                self.free_ops.push(index);
                self.answer(slot.origin, reply);
                None
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

    fn psp_call(&mut self, call: PspCall) -> (PspOutcome, u64) {
        let psp_timeout = self.scenario.stack.psp_timeout;
        let request = match call {
            PspCall::GetCharge(provider_ref) => PspRequest::GetCharge(provider_ref),
            PspCall::ChargesForPayment(payment) => PspRequest::ListCharges(payment),
            PspCall::Refund { provider_ref, idempotency_key } => PspRequest::Refund { provider_ref, idempotency_key },
        };
        let served = self.world.psp(self.at(), &request);
        let round_trip = self.latency(Leg::StackPsp, served.key.ids());
        self.record_served(served.fired, served.called, served.truth);
        if let Some(delay) = served.late {
            self.refund_later(request, delay);
        }
        let outcome = match served.answer {
            PspAnswer::Timeout => return (PspOutcome::Unavailable, psp_timeout),
            PspAnswer::Error => return (PspOutcome::Unavailable, round_trip.min(psp_timeout)),
            PspAnswer::Charge(charge) => PspOutcome::Charge(charge),
            PspAnswer::Charges(charges) => PspOutcome::Charges(charges),
            PspAnswer::Refund(RefundOutcome::Refunded(_)) => PspOutcome::Refunded,
            PspAnswer::Refund(RefundOutcome::AlreadyRefunded) => PspOutcome::AlreadyRefunded,
            PspAnswer::Refund(RefundOutcome::NotFound | RefundOutcome::NotCaptured) => PspOutcome::Unavailable,
        };
        if round_trip > psp_timeout {
            return (PspOutcome::Unavailable, psp_timeout);
        }
        (outcome, round_trip)
    }

    /// Records the fault the world played on a call, what it answered and
    /// the ground truth it saw.
    fn record_served(&mut self, fired: Option<Fired>, called: Option<Called>, truth: Option<Truth>) {
        let events = served_events(fired, called, truth);
        events.for_each(|event| self.record(event));
    }

    fn find_cycles(&mut self, machine_id: &str, execute_key: &str) -> (IotOutcome, u64) {
        let timeout = self.scenario.stack.settings.iot_timeout;
        let served = self.world.find_cycles(self.at(), machine_id, execute_key);
        let round_trip = self.latency(Leg::StackIot, served.key.ids());
        self.record_served(served.fired, served.called, served.truth);
        match served.answer {
            CyclesAnswer::Cycles(cycles) if round_trip <= timeout => (IotOutcome::Cycles(cycles), round_trip),
            _ => (IotOutcome::NoAnswer, timeout),
        }
    }

    /// A start command leaves the stack; the machine acts when it arrives.
    /// Returns the stack's answer when the gateway gives it without the
    /// machine (an expired command; a late one: 504 now, the machine later).
    fn send_command(&mut self, index: u32, slot: &OpSlot, command: StartCycleCommand) -> Option<(IotOutcome, u64)> {
        let timeout = self.scenario.stack.settings.iot_timeout;
        // The fencing instant is on the database's clock: true time here.
        let served = self.world.send_command(self.at(), &command, self.now);
        let round_trip = self.latency(Leg::StackIot, served.key.ids());
        let kind = served.fired.map(|fired| fired.kind);
        self.record_served(served.fired, served.called, served.truth);
        // A lost command reaches no machine: the stack waits out its timeout.
        let (machine, arrives_after, round_trip, answered) = match served.answer {
            Route::ToMachine(machine) => (machine, round_trip / 2, round_trip, None),
            Route::Lost | Route::UnknownMachine => (u32::MAX, timeout, timeout, None),
            Route::Expired => return Some((IotOutcome::Expired, round_trip.min(timeout))),
            Route::Late { machine, delay } => {
                (machine, delay, round_trip, Some((IotOutcome::GatewayTimeout, round_trip.min(timeout))))
            }
        };
        let in_flight = InFlightCommand {
            command,
            machine,
            fault: kind,
            op: index,
            serial: slot.serial,
            sent_at: self.now,
            round_trip,
            key: served.key,
            doubled: self.bad_build_doubles(slot),
        };
        self.commands.push(in_flight);
        let command = (self.commands.len() - 1) as u32;
        self.agenda.schedule(self.now + arrives_after, SimEvent::AtMachine { command });
        answered
    }

    /// The command reaches the machine (even if the replica that sent it died).
    pub(super) fn at_machine(&mut self, command_id: u32) {
        let timeout = self.scenario.stack.settings.iot_timeout;
        let in_flight = &self.commands[command_id as usize];
        let (op, serial, sent_at, round_trip, fault) =
            (in_flight.op, in_flight.serial, in_flight.sent_at, in_flight.round_trip, in_flight.fault);
        let doubled = in_flight.doubled;
        let outcome = if in_flight.machine == u32::MAX {
            IotOutcome::NoAnswer
        } else {
            let machine = in_flight.machine;
            let command = in_flight.command.clone();
            let cycle_length = self.latency(Leg::Cycle, in_flight.key.ids());
            let AtMachine { answer, truth, called } =
                self.world.at_machine(machine, &command, (fault, self.now), (self.now, cycle_length));
            // The bad build's second send runs the machine again: a second
            // cycle for the same payment, recorded as the ground truth sees it.
            let again = match (&truth, doubled) {
                (Some(Truth::CycleStarted { machine, payment, execute_key, cycle }), true) => {
                    let cycle = crate::contract::Text::from(format!("{cycle}-again"));
                    Some(Event::CycleStarted {
                        machine: *machine,
                        payment: *payment,
                        execute_key: execute_key.clone(),
                        cycle,
                    })
                }
                _ => None,
            };
            self.record_served(None, called, truth);
            if let Some(again) = again {
                self.record(again);
            }
            if fault == Some(FaultKind::CommandLate) {
                return; // the stack heard its 504 long ago
            }
            match answer {
                GatewayAnswer::NoAnswer => IotOutcome::NoAnswer,
                GatewayAnswer::GatewayTimeout => IotOutcome::GatewayTimeout,
                GatewayAnswer::Started(cycle) => IotOutcome::Started(cycle),
                GatewayAnswer::AlreadyStarted(cycle) => IotOutcome::AlreadyStarted(cycle),
                GatewayAnswer::Busy => IotOutcome::Busy,
                GatewayAnswer::Offline => IotOutcome::Offline,
                GatewayAnswer::Expired => IotOutcome::Expired,
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
