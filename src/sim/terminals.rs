//! The customers' side of the simulation: arrivals at each condominium, the
//! purchase flow at the terminals with its timeouts and retries, the network
//! between terminals and the stack (lost requests, lost responses, double
//! taps), the card charge and the sweep's cron.

use super::{Leg, Origin, RequestSlot, Sim, SimEvent};
use crate::contract::{Endpoint, Reply, Request};
use crate::faults::{Boundary, Crossing, FaultKey, FaultKind, Lane};
use crate::history::{Event, NO_PURCHASE};
use crate::world::outcomes::Fired;
use crate::world::terminal::{Heard, Next};
use crate::world::terminal_faults;
use crate::world::{Purchase, PurchaseStep};

impl Sim<'_> {
    /// Schedules the plan's next customer.
    pub(super) fn schedule_arrival(&mut self) {
        self.next_arrival = self.traffic.next_arrival();
        if let Some(planned) = &self.next_arrival {
            self.agenda.schedule(planned.at, SimEvent::Arrival);
        }
    }

    /// A customer takes a free machine and starts a purchase at the planned terminal.
    pub(super) fn arrival(&mut self) {
        let planned = self.next_arrival.take().expect("an arrival is planned");
        self.schedule_arrival();
        let (reserved, gateway, now) = (&self.reserved, &self.world.gateway, self.now);
        let is_free = |m: u32| reserved[m as usize].is_none() && gateway.machine(m).is_idle(now);
        let Some(machine) = self.traffic.pick_machine(&planned, is_free) else {
            return; // every machine is taken: the customer comes back another time
        };
        let serial = planned.purchase;
        let purchase =
            Purchase::in_fleet(&self.scenario.fleet, (machine, planned.terminal), planned.amount_cents, serial);
        self.purchases.insert(serial, purchase);
        self.reserved[machine as usize] = Some(serial);
        self.record(Event::Arrived { purchase: serial, condominium: planned.condominium, machine });
        self.send_step(serial);
    }

    fn terminal_crossing(&self, purchase: u32, endpoint: Endpoint) -> Crossing {
        let condominium = Some(self.purchases[purchase as usize].condominium);
        Crossing { now: self.now, phase: self.controller.phase(), condominium, endpoint: Some(endpoint), world: None }
    }

    /// Sends the purchase's current request, rolling the terminal → stack faults.
    pub(super) fn send_step(&mut self, purchase: u32) {
        let state = &self.purchases[purchase as usize];
        let Some(endpoint) = state.endpoint() else { return };
        let (attempt, request) = (state.attempt, state.request());
        let id = self.new_request(purchase, endpoint, attempt, 0, Some(Box::new(request)));
        self.record(Event::Sent { request: id, purchase, endpoint, attempt, twin: false });
        self.agenda.schedule(self.now + self.scenario.terminals.request_timeout, SimEvent::Timeout { request: id });
        let crossing = self.terminal_crossing(purchase, endpoint);
        let key = FaultKey::at_terminal(purchase, endpoint, Lane::Request, attempt);
        match self.faults.roll(Boundary::TerminalToStack, &crossing, key) {
            Some((fault, spec)) if spec.kind == FaultKind::RequestLost => {
                self.record(Event::Fault { fault, kind: spec.kind, key });
            }
            Some((fault, spec)) => {
                let fired = Fired { fault, kind: spec.kind, key };
                self.record(fired.into());
                let planned = self.traffic.duplicate_delay(purchase, endpoint, attempt);
                for (copy, delay) in (1u8..).zip(terminal_faults::twin_delays(&self.faults, fired, planned)) {
                    let request = self.requests[id as usize].request.clone();
                    let twin = self.new_request(purchase, endpoint, attempt, copy, request);
                    self.agenda.schedule(self.now + delay, SimEvent::SendTwin { request: twin });
                }
                self.travel_to_stack(id);
            }
            None => self.travel_to_stack(id),
        }
    }

    pub(super) fn new_request(
        &mut self,
        purchase: u32,
        endpoint: Endpoint,
        attempt: u8,
        copy: u8,
        request: Option<Box<Request>>,
    ) -> u32 {
        let twin = copy > 0;
        let slot = RequestSlot { purchase, endpoint, attempt, twin, copy, settled: false, request, reply: None };
        self.requests.push(slot);
        (self.requests.len() - 1) as u32
    }

    fn travel_to_stack(&mut self, request: u32) {
        let one_way = self.latency(Leg::TerminalToStack, self.request_ids(request)) / 2;
        self.agenda.schedule(self.now + one_way, SimEvent::AtStack { request });
    }

    /// A terminal request's stable ids: its purchase, step, attempt and copy.
    fn request_ids(&self, request: u32) -> [u64; 3] {
        let slot = &self.requests[request as usize];
        let call = (slot.endpoint as u64) << 8 | u64::from(slot.attempt);
        [u64::from(slot.purchase), call, u64::from(slot.copy)]
    }

    pub(super) fn send_twin(&mut self, request: u32) {
        let slot = &self.requests[request as usize];
        let (purchase, endpoint, attempt) = (slot.purchase, slot.endpoint, slot.attempt);
        self.record(Event::Sent { request, purchase, endpoint, attempt, twin: true });
        self.travel_to_stack(request);
    }

    pub(super) fn at_stack(&mut self, request: u32) {
        let slot = &mut self.requests[request as usize];
        let body = slot.request.take().expect("a request is sent once");
        let condominium = Some(self.purchases[slot.purchase as usize].condominium);
        self.start_operation(*body, Origin::Terminal(request), condominium);
    }

    /// The stack's answer leaves: to the terminal (unless lost) or to the cron.
    pub(super) fn answer(&mut self, origin: Origin, reply: Reply) {
        let request = origin.request();
        self.record(Event::answered(request, reply.http_status(), &reply));
        match origin {
            Origin::Terminal(_) => {}
            Origin::Cron(_) => {
                if let Reply::Sweep(report) = reply {
                    let (expired, compensated, backlog) = (report.expired, report.compensated, report.backlog);
                    self.record(Event::Swept { expired, compensated, backlog });
                }
                return;
            }
            Origin::Operator(_) => return self.operator_answered(request, reply),
        }
        let slot = &self.requests[request as usize];
        let (purchase, endpoint, attempt, twin) = (slot.purchase, slot.endpoint, slot.attempt, slot.twin);
        let crossing = self.terminal_crossing(purchase, endpoint);
        let lane = if twin { Lane::TwinResponse } else { Lane::Response };
        let key = FaultKey::at_terminal(purchase, endpoint, lane, attempt);
        if let Some((fault, spec)) = self.faults.roll(Boundary::StackToTerminal, &crossing, key) {
            return self.record(Event::Fault { fault, kind: spec.kind, key });
        }
        self.requests[request as usize].reply = Some(Box::new(reply));
        let one_way = self.latency(Leg::StackToTerminal, self.request_ids(request)) / 2;
        self.agenda.schedule(self.now + one_way, SimEvent::AtTerminal { request });
    }

    pub(super) fn at_terminal(&mut self, request: u32) {
        let slot = &mut self.requests[request as usize];
        let reply = slot.reply.take().expect("a delivered reply");
        if slot.settled {
            return; // too late: the terminal already gave up on it
        }
        let (purchase, twin) = (slot.purchase, slot.twin);
        slot.settled = !twin;
        self.record(Event::Heard { request, status: Some(reply.http_status()), error: reply.error_code() });
        if let Some((payment, status)) = Purchase::told(&reply) {
            self.record(Event::Told { purchase, payment, status });
        }
        let next = if twin {
            self.purchases[purchase as usize].on_extra_confirmation(&reply)
        } else {
            let walks_away = reply.error_code().is_some() && self.walks_away(purchase);
            let max_attempts = self.scenario.terminals.max_attempts;
            Some(self.purchases[purchase as usize].on_heard(Heard::Reply(&reply), max_attempts, walks_away))
        };
        if let Some(next) = next {
            self.follow(purchase, next);
        }
    }

    pub(super) fn timeout(&mut self, request: u32) {
        let slot = &mut self.requests[request as usize];
        if slot.settled {
            return;
        }
        slot.settled = true;
        let purchase = slot.purchase;
        self.record(Event::Heard { request, status: None, error: None });
        let walks_away = self.walks_away(purchase);
        let next = self.purchases[purchase as usize].on_heard(
            Heard::Nothing,
            self.scenario.terminals.max_attempts,
            walks_away,
        );
        self.follow(purchase, next);
    }

    fn walks_away(&mut self, purchase: u32) -> bool {
        let state = &self.purchases[purchase as usize];
        let Some(endpoint) = state.endpoint() else { return false };
        let crossing = self.terminal_crossing(purchase, endpoint);
        let key = FaultKey::at_terminal(purchase, endpoint, Lane::Customer, state.attempt);
        match self.faults.roll(Boundary::Customer, &crossing, key) {
            Some((fault, spec)) => {
                self.record(Event::Fault { fault, kind: spec.kind, key });
                true
            }
            None => false,
        }
    }

    fn follow(&mut self, purchase: u32, next: Next) {
        match next {
            Next::Send => match self.offline_before(purchase, self.purchases[purchase as usize].endpoint()) {
                Some(back) => self.agenda.schedule(back, SimEvent::SendStep { purchase }),
                None => self.send_step(purchase),
            },
            Next::Retry => {
                let attempt = u32::from(self.purchases[purchase as usize].attempt);
                let backoff = self.scenario.terminals.backoff << (attempt.saturating_sub(2)).min(6);
                self.agenda.schedule(self.now + backoff, SimEvent::SendStep { purchase });
            }
            Next::Charge => {
                let delay = self.latency(Leg::Card, [u64::from(purchase), 0, 0]);
                let start = self.offline_before(purchase, None).unwrap_or(self.now);
                let late = self.capture_late(purchase);
                self.agenda.schedule(start + delay + late, SimEvent::CardCharged { purchase });
            }
            Next::Finished(outcome) => {
                let machine = self.purchases[purchase as usize].machine;
                if self.reserved[machine as usize] == Some(purchase) {
                    self.reserved[machine as usize] = None;
                }
                self.record(Event::Ended { purchase, outcome });
            }
        }
    }

    /// Before a purchase's next step (`None`: the card charge): does its
    /// terminal go offline? Returns when it is back, with the same keys.
    fn offline_before(&mut self, purchase: u32, endpoint: Option<Endpoint>) -> Option<crate::time::Millis> {
        let crossing = self.terminal_crossing(purchase, terminal_faults::step_endpoint(endpoint));
        let (fired, duration) = terminal_faults::offline_before(&self.faults, &crossing, purchase, endpoint)?;
        self.record(fired.into());
        Some(self.now.saturating_add(duration))
    }

    /// How late the card's capture lands at the PSP (zero without `capture_late`).
    fn capture_late(&mut self, purchase: u32) -> crate::time::Millis {
        let crossing = self.terminal_crossing(purchase, terminal_faults::step_endpoint(None));
        let Some((fired, late)) = terminal_faults::capture_late(&self.faults, &crossing, purchase) else { return 0 };
        self.record(fired.into());
        late
    }

    /// The card is charged at the PSP (the terminal talks to it directly).
    pub(super) fn card_charged(&mut self, purchase: u32) {
        let declined = self.traffic.declined(purchase);
        let state = &self.purchases[purchase as usize];
        assert_eq!(state.step, PurchaseStep::Charge);
        let payment = state.payment_id.expect("authorized before the charge");
        let key = format!("card-{}", state.idempotency_key).into();
        let owner = (purchase, Some(state.condominium));
        let (charge, truth) = self.world.charge(owner, payment, (state.amount_cents, key), declined);
        let captured = charge.status == crate::contract::ChargeStatus::Captured;
        let provider_ref = charge.provider_ref.clone();
        if let Some(truth) = truth {
            self.record(truth.into());
        }
        let next = self.purchases[purchase as usize].on_charged(provider_ref, captured);
        self.follow(purchase, next);
    }

    /// The cron calls the compensation sweep.
    pub(super) fn sweep(&mut self) {
        let next = self.now + self.scenario.stack.sweep_interval;
        self.agenda.schedule(next, SimEvent::Sweep);
        let id = self.new_request(NO_PURCHASE, Endpoint::CompensationAlert, 1, 0, None);
        self.record(Event::sent_by_posim(id, Endpoint::CompensationAlert));
        self.start_operation(Request::CompensationSweep, Origin::Cron(id), None);
    }
}
