//! The world's side of every call the stack makes to it, one state machine
//! for both engines: fed a call and the time, it rolls the planned fault,
//! serves the call at the PSP ledger or the gateway, and says what the world
//! answers and what ground truth it records. No I/O: the simulator schedules
//! the answer on its agenda, the live engine sends it over HTTP.
//!
//! A fault is rolled on (purchase, world endpoint, attempt): the purchase
//! whose card charge the PSP saw for the call's payment, and the attempt the
//! n-th call at that endpoint for it, as the world counts them. Both engines
//! see the same charges and count the same calls, so a live run plays the
//! simulator's plan at the world's boundaries. A payment the PSP never charged
//! (an expired authorization the compensation sweep looks up, an unknown
//! provider_ref or execute_key) has no purchase: such calls are keyed under
//! [`UNCHARGED`] and counted together, per endpoint, in the order served.

use rustc_hash::FxHashMap as HashMap;

use super::calls::{self, Called, WorldAnswer};
use super::fleet::Fleet;
use super::gateway::{CyclesAnswer, Gateway, GatewayAnswer, Route};
use super::psp::{PspAnswer, PspLedger, PspRequest, RefundOutcome};
use crate::contract::{Charge, ChargeStatus, PaymentId, StartCycleCommand, Text};
use crate::faults::{Boundary, COMMAND_EXPIRY, Crossing, FaultKey, FaultKind, FaultPlan, FaultSite, WorldEndpoint};
use crate::time::Millis;

/// The purchase of calls about a payment the PSP never charged.
pub const UNCHARGED: u32 = u32::MAX;

/// When a call reaches the world: the time and the plan phase (fault scopes).
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub now: Millis,
    pub phase: u16,
}

/// A planned fault that fired on a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    pub fault: u16,
    pub kind: FaultKind,
    pub key: FaultKey,
}

/// Ground truth the world records (the checkers judge the stack by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Truth {
    Charged { purchase: u32, payment: PaymentId, provider_ref: Text, captured: bool },
    Refunded { payment: PaymentId, provider_ref: Text },
    CycleStarted { machine: u32, payment: PaymentId, execute_key: Text, cycle: Text },
}

/// What became of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<A> {
    /// The key its fault roll used (also when nothing fired).
    pub key: FaultKey,
    pub fired: Option<Fired>,
    pub answer: A,
    pub truth: Option<Truth>,
    /// What the world answered, for the history (none: a command on its way
    /// to its machine, which answers in [`WorldState::at_machine`]).
    pub called: Option<Called>,
    /// A late delivery: the call lands at the world this much later.
    pub late: Option<Millis>,
}

/// What became of a command at its machine.
pub struct AtMachine {
    pub answer: GatewayAnswer,
    pub truth: Option<Truth>,
    /// None for a command delivered late: the gateway's 504 answered it.
    pub called: Option<Called>,
}

/// Has the command's fencing instant passed on the stack's clock?
fn expired(command: &StartCycleCommand, stack_now: Millis) -> bool {
    command.not_after.is_some_and(|not_after| stack_now > not_after)
}

/// The ground truth of a refund the ledger just made.
fn refunded(answer: &PspAnswer, request: &PspRequest, payment: Option<PaymentId>) -> Option<Truth> {
    match (answer, request) {
        (PspAnswer::Refund(RefundOutcome::Refunded(true)), PspRequest::Refund { provider_ref, .. }) => {
            let payment = payment.expect("a refunded charge is in the ledger");
            Some(Truth::Refunded { payment, provider_ref: provider_ref.clone() })
        }
        _ => None,
    }
}

/// Who a charged payment belongs to: its purchase and condominium.
#[derive(Clone, Copy, Debug)]
struct Owner {
    purchase: u32,
    condominium: Option<u32>,
}

pub struct WorldState {
    pub psp: PspLedger,
    pub gateway: Gateway,
    faults: FaultPlan,
    owners: HashMap<PaymentId, Owner>,
    /// Calls so far, per (purchase, endpoint).
    calls: HashMap<(u32, WorldEndpoint), u32>,
    /// execute_key → payment, learnt from the commands (a cycles query names only the key).
    keys: HashMap<Text, PaymentId>,
}

impl WorldState {
    pub fn new(fleet: &Fleet, faults: FaultPlan) -> WorldState {
        WorldState {
            psp: PspLedger::default(),
            gateway: Gateway::new(fleet),
            faults,
            owners: HashMap::default(),
            calls: HashMap::default(),
            keys: HashMap::default(),
        }
    }

    /// The terminal charges the card for `purchase` (no fault: the card
    /// network is the terminal's). A replay of the key records nothing new.
    pub fn charge(
        &mut self,
        (purchase, condominium): (u32, Option<u32>),
        payment: PaymentId,
        (amount_cents, idempotency_key): (i64, Text),
        declined: bool,
    ) -> (Charge, Option<Truth>) {
        let (charge, new) = self.psp.charge(payment, amount_cents, idempotency_key, declined);
        if !new {
            return (charge, None);
        }
        self.owners.entry(payment).or_insert(Owner { purchase, condominium });
        let captured = charge.status == ChargeStatus::Captured;
        let truth = Truth::Charged { purchase, payment, provider_ref: charge.provider_ref.clone(), captured };
        (charge, Some(truth))
    }

    /// A call to the PSP: a timeout or a 5xx if the plan says so, else the
    /// ledger's answer. A late refund answers a timeout; the shell lands it
    /// with [`Self::land_refund`] after [`Served::late`].
    pub fn psp(&mut self, at: At, request: &PspRequest) -> Served<PspAnswer> {
        let endpoint = match request {
            PspRequest::GetCharge(_) => WorldEndpoint::GetCharge,
            PspRequest::ListCharges(_) => WorldEndpoint::ListCharges,
            PspRequest::Refund { .. } => WorldEndpoint::Refund,
        };
        let payment = self.psp.payment_of(request);
        let (key, fired) = self.roll(at, endpoint, payment);
        let mut late = None;
        let answer = match fired.map(|fired| fired.kind) {
            Some(FaultKind::PspTimeout) => PspAnswer::Timeout,
            Some(FaultKind::RefundLate) if matches!(request, PspRequest::Refund { .. }) => {
                let bound = self.faults.faults()[usize::from(fired.map_or(0, |f| f.fault))].duration;
                late = Some(self.faults.extent(key, bound));
                PspAnswer::Timeout
            }
            Some(_) => PspAnswer::Error,
            None => self.psp.serve(request),
        };
        let truth = refunded(&answer, request, payment);
        let called = Some(Called { endpoint, payment, answer: WorldAnswer::from(&answer) });
        Served { key, fired, answer, truth, called, late }
    }

    /// A refund held back by [`FaultKind::RefundLate`] lands at the PSP now.
    pub fn land_refund(&mut self, request: &PspRequest) -> Option<Truth> {
        let payment = self.psp.payment_of(request);
        let answer = self.psp.serve(request);
        refunded(&answer, request, payment)
    }

    /// A `start_cycle` command reaches the gateway: where it goes from there.
    /// `stack_now` is the time on the clock the stack's `not_after` is on.
    pub fn send_command(&mut self, at: At, command: &StartCycleCommand, stack_now: Millis) -> Served<Route> {
        self.keys.insert(command.execute_key.clone(), command.payment_id);
        let (key, fired) = self.roll(at, WorldEndpoint::StartCycle, Some(command.payment_id));
        let fault = fired.map(|fired| {
            let duration = self.faults.faults()[usize::from(fired.fault)].duration;
            match fired.kind {
                // Late, but never past the gateway's command expiry.
                FaultKind::CommandLate => (fired.kind, self.faults.extent(key, duration.min(COMMAND_EXPIRY))),
                kind => (kind, duration),
            }
        });
        let answer = self.gateway.dispatch(&command.machine_id, fault, at.now, expired(command, stack_now));
        let called = calls::routed(&answer).map(|answer| Called {
            endpoint: WorldEndpoint::StartCycle,
            payment: Some(command.payment_id),
            answer,
        });
        Served { key, fired, answer, truth: None, called, late: None }
    }

    /// The command reaches `machine`; `fault` is what [`Self::send_command`] fired.
    pub fn at_machine(
        &mut self,
        machine: u32,
        command: &StartCycleCommand,
        (fault, stack_now): (Option<FaultKind>, Millis),
        (now, cycle_length): (Millis, Millis),
    ) -> AtMachine {
        let fate = (fault, expired(command, stack_now));
        let (answer, started) = self.gateway.arrive(machine, command, fate, (now, cycle_length));
        let truth = started.map(|cycle| Truth::CycleStarted {
            machine,
            payment: command.payment_id,
            execute_key: command.execute_key.clone(),
            cycle,
        });
        let called = (fault != Some(FaultKind::CommandLate)).then(|| Called {
            endpoint: WorldEndpoint::StartCycle,
            payment: Some(command.payment_id),
            answer: WorldAnswer::from(&answer),
        });
        AtMachine { answer, truth, called }
    }

    /// `GET …/cycles?execute_key=K` at the gateway.
    pub fn find_cycles(&mut self, at: At, machine_id: &str, execute_key: &str) -> Served<CyclesAnswer> {
        let payment = self.keys.get(execute_key).copied();
        let (key, fired) = self.roll(at, WorldEndpoint::FindCycles, payment);
        let answer = self.gateway.cycles(machine_id, execute_key, fired.is_some(), at.now);
        let called = Some(Called { endpoint: WorldEndpoint::FindCycles, payment, answer: WorldAnswer::from(&answer) });
        Served { key, fired, answer, truth: None, called, late: None }
    }

    /// Counts the call and rolls its boundary once, keyed on the payment's purchase.
    fn roll(&mut self, at: At, endpoint: WorldEndpoint, payment: Option<PaymentId>) -> (FaultKey, Option<Fired>) {
        let owner = payment.and_then(|payment| self.owners.get(&payment).copied());
        let purchase = owner.map_or(UNCHARGED, |owner| owner.purchase);
        let attempt = self.calls.entry((purchase, endpoint)).or_default();
        *attempt += 1;
        let key = FaultKey::Call { purchase, site: FaultSite::World(endpoint), attempt: *attempt };
        let boundary = match endpoint {
            WorldEndpoint::GetCharge | WorldEndpoint::ListCharges | WorldEndpoint::Refund => Boundary::StackToPsp,
            WorldEndpoint::StartCycle | WorldEndpoint::FindCycles => Boundary::StackToIot,
        };
        let condominium = owner.and_then(|owner| owner.condominium);
        let crossing = Crossing { now: at.now, phase: at.phase, condominium, endpoint: None, world: Some(endpoint) };
        let fired =
            self.faults.roll(boundary, &crossing, key).map(|(fault, spec)| Fired { fault, kind: spec.kind, key });
        (key, fired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultSpec;
    use crate::world::fleet::FleetShape;
    use uuid::Uuid;

    /// A world of one condominium with two machines, where `kind` (if any)
    /// fires on every call at its boundary.
    fn world(naive: bool, kind: Option<FaultKind>) -> WorldState {
        let shape = FleetShape {
            seed: 1,
            condominiums: 1,
            machines_per_condominium: 2,
            terminals_per_condominium: 1,
            naive_share: if naive { 1.0 } else { 0.0 },
        };
        let faults = kind.map(|kind| FaultSpec::everywhere(kind, 1.0, 60_000));
        WorldState::new(&Fleet::generate(&shape), FaultPlan::new(7, faults.into_iter().collect()))
    }

    const AT: At = At { now: 1_000, phase: 0 };

    /// The fleet's first machine.
    const MACHINE: &str = "m-0000-0";

    fn command(key: &str) -> StartCycleCommand {
        StartCycleCommand {
            machine_id: MACHINE.into(),
            command_id: Uuid::from_u128(9),
            payment_id: Uuid::from_u128(1),
            execute_key: key.into(),
            not_after: None,
        }
    }

    /// Sends a command through the gateway; returns the answer and whether a cycle started.
    fn start(world: &mut WorldState, key: &str, now: Millis) -> (GatewayAnswer, bool) {
        let command = command(key);
        let served = world.send_command(At { now, phase: 0 }, &command, now);
        let Route::ToMachine(machine) = served.answer else { return (GatewayAnswer::NoAnswer, false) };
        let AtMachine { answer, truth, .. } =
            world.at_machine(machine, &command, (served.fired.map(|f| f.kind), now), (now, 100));
        (answer, matches!(truth, Some(Truth::CycleStarted { .. })))
    }

    fn cycles(world: &WorldState, key: &str) -> usize {
        world.gateway.machine(0).cycles(key).len()
    }

    #[test]
    fn a_504_or_a_lost_ack_leaves_a_cycle_a_lost_command_none() {
        let mut gateway_504 = world(false, Some(FaultKind::Gateway504));
        assert_eq!(start(&mut gateway_504, "k", 0), (GatewayAnswer::GatewayTimeout, true));
        assert_eq!(cycles(&gateway_504, "k"), 1);
        let mut ack_lost = world(false, Some(FaultKind::IotAckLost));
        assert_eq!(start(&mut ack_lost, "k", 0), (GatewayAnswer::NoAnswer, true));
        assert_eq!(cycles(&ack_lost, "k"), 1);
        let mut command_lost = world(false, Some(FaultKind::IotCommandLost));
        let served = command_lost.send_command(AT, &command("k"), AT.now);
        assert_eq!(served.answer, Route::Lost);
        assert_eq!(served.fired.map(|f| f.kind), Some(FaultKind::IotCommandLost));
        assert_eq!(cycles(&command_lost, "k"), 0);
    }

    #[test]
    fn naive_firmware_runs_every_command_dedupe_runs_a_key_once() {
        let mut naive = world(true, None);
        assert!(matches!(start(&mut naive, "k", 0), (GatewayAnswer::Started(_), true)));
        assert!(matches!(start(&mut naive, "k", 10), (GatewayAnswer::Started(_), true)));
        assert_eq!(cycles(&naive, "k"), 2);
        let mut dedupe = world(false, None);
        assert!(matches!(start(&mut dedupe, "k", 0), (GatewayAnswer::Started(_), true)));
        assert!(matches!(start(&mut dedupe, "k", 10), (GatewayAnswer::AlreadyStarted(_), false)));
        assert_eq!(cycles(&dedupe, "k"), 1);
    }

    #[test]
    fn an_offline_machine_answers_offline_until_it_is_back() {
        let mut offline = world(false, Some(FaultKind::MachineOffline));
        assert_eq!(start(&mut offline, "k", 0), (GatewayAnswer::Offline, false));
        let during = offline.find_cycles(At { now: 30_000, phase: 0 }, MACHINE, "k");
        assert_eq!(during.answer, CyclesAnswer::NoAnswer, "the fault rolled on the query loses it");
        assert_eq!(offline.gateway.cycles(MACHINE, "k", false, 30_000), CyclesAnswer::Offline);
        assert_eq!(offline.gateway.cycles(MACHINE, "k", false, 60_000), CyclesAnswer::Cycles(vec![]));
    }

    #[test]
    fn the_psp_replays_a_charge_by_key_and_refunds_once() {
        let mut world = world(false, None);
        let payment = Uuid::from_u128(1);
        let (charge, truth) = world.charge((4, Some(0)), payment, (1500, "card-k".into()), false);
        assert!(matches!(truth, Some(Truth::Charged { purchase: 4, captured: true, .. })));
        let (replay, truth) = world.charge((4, Some(0)), payment, (1500, "card-k".into()), false);
        assert_eq!((replay, truth), (charge.clone(), None), "a replay of the key is the same charge");
        let refund =
            |key: &str| PspRequest::Refund { provider_ref: charge.provider_ref.clone(), idempotency_key: key.into() };
        let first = world.psp(AT, &refund("r1"));
        assert_eq!(first.answer, PspAnswer::Refund(RefundOutcome::Refunded(true)));
        assert!(matches!(first.truth, Some(Truth::Refunded { .. })));
        let other = world.psp(AT, &refund("r2"));
        assert_eq!(other.answer, PspAnswer::Refund(RefundOutcome::AlreadyRefunded));
        assert_eq!(other.truth, None);
    }

    #[test]
    fn calls_are_keyed_on_the_purchase_and_counted_per_endpoint() {
        let mut world = world(false, Some(FaultKind::PspTimeout));
        let payment = Uuid::from_u128(1);
        let (charge, _) = world.charge((4, Some(0)), payment, (1500, "card-k".into()), false);
        let get = PspRequest::GetCharge(charge.provider_ref.clone());
        let attempts: Vec<FaultKey> = (0..2).map(|_| world.psp(AT, &get).key).collect();
        let key = |purchase, endpoint, attempt| FaultKey::Call { purchase, site: FaultSite::World(endpoint), attempt };
        assert_eq!(attempts, [key(4, WorldEndpoint::GetCharge, 1), key(4, WorldEndpoint::GetCharge, 2)]);
        let list = world.psp(AT, &PspRequest::ListCharges(payment));
        assert_eq!((list.key, list.answer), (key(4, WorldEndpoint::ListCharges, 1), PspAnswer::Timeout));
        let stranger = world.psp(AT, &PspRequest::ListCharges(Uuid::from_u128(2)));
        assert_eq!(stranger.key, key(UNCHARGED, WorldEndpoint::ListCharges, 1), "an uncharged payment");
    }

    #[test]
    fn a_fenced_command_past_its_instant_is_refused_and_a_late_one_dropped() {
        let mut world = world(true, None);
        let mut fenced = command("k");
        fenced.not_after = Some(5_000);
        assert_eq!(world.send_command(AT, &fenced, 5_001).answer, Route::Expired);
        let served = world.send_command(AT, &fenced, 4_000);
        let Route::ToMachine(machine) = served.answer else { panic!("{:?}", served.answer) };
        let AtMachine { answer, truth, .. } = world.at_machine(machine, &fenced, (None, 5_001), (5_001, 100));
        assert_eq!((answer, truth), (GatewayAnswer::Expired, None), "no cycle after not_after");
        assert_eq!(cycles(&world, "k"), 0);
    }

    #[test]
    fn a_late_command_is_held_within_the_expiry_and_a_late_refund_lands_later() {
        let mut late = world(true, Some(FaultKind::CommandLate));
        let served = late.send_command(AT, &command("k"), AT.now);
        let Route::Late { machine, delay } = served.answer else { panic!("{:?}", served.answer) };
        let heard = served.called.map(|called| called.answer);
        assert_eq!(heard, Some(WorldAnswer::GatewayTimeout), "the stack hears 504 at once");
        assert!((1..=COMMAND_EXPIRY).contains(&delay), "{delay}");
        let fate = (Some(FaultKind::CommandLate), AT.now + delay);
        let AtMachine { truth, called, .. } = late.at_machine(machine, &command("k"), fate, (AT.now + delay, 100));
        assert_eq!(called, None, "the gateway's 504 answered the late command: {called:?}");
        assert!(matches!(truth, Some(Truth::CycleStarted { .. })), "an unfenced late command still runs");
        let mut refunds = world(false, Some(FaultKind::RefundLate));
        let payment = Uuid::from_u128(1);
        let (charge, _) = refunds.charge((4, Some(0)), payment, (1500, "card-k".into()), false);
        let get = refunds.psp(AT, &PspRequest::GetCharge(charge.provider_ref.clone()));
        assert!(matches!(get.answer, PspAnswer::Charge(Some(_))), "a late refund is about refunds only");
        let refund = PspRequest::Refund { provider_ref: charge.provider_ref.clone(), idempotency_key: "r".into() };
        let served = refunds.psp(AT, &refund);
        assert_eq!((served.answer.clone(), served.truth.clone()), (PspAnswer::Timeout, None));
        assert!(served.late.is_some_and(|delay| (1..=60_000).contains(&delay)));
        assert!(matches!(refunds.land_refund(&refund), Some(Truth::Refunded { .. })), "it lands later");
    }
}
