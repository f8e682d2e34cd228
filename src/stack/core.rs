//! The reference stack's domain logic, sans-IO (in the manner of quinn-proto):
//! a request and the current time go in, and the core answers with one
//! [`Effect`] at a time — a store operation, a PSP call, an IoT command, or the
//! reply. The driver resolves the effect and feeds the outcome back with
//! [`Stack::resume`]. No sockets, no clocks, no threads: the simulator and the
//! HTTP server run this same code, and a crash is simply a driver that stops
//! resolving effects.

use std::collections::VecDeque;

use uuid::Uuid;

use super::store::{NewPayment, PaymentRecord, PaymentState, StoreOp, StoreResult};
use super::{BugSet, StackBug};
use crate::contract::validate;
use crate::contract::{
    AuthorizeRequest, CanaryConfig, CanaryMode, Charge, ChargeStatus, ConfirmRequest, CycleRecord, ErrorCode,
    ExecuteRequest, PaymentId, Reply, Request, StackSettings, StartCycleCommand, SweepReport, Text,
};
use crate::time::Millis;

/// How many overdue payments one sweep handles at most (a bound on the loop).
pub const SWEEP_BATCH_MAX: usize = 500;

/// How long after a payment expired the sweep still looks for a card
/// captured late (a terminal in store-and-forward mode that was offline).
pub const LATE_CAPTURE_WINDOW: Millis = crate::time::HOUR;

/// A call to the acquirer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PspCall {
    GetCharge(Text),
    ChargesForPayment(PaymentId),
    Refund { provider_ref: Text, idempotency_key: Text },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PspOutcome {
    Charge(Option<Charge>),
    Charges(Vec<Charge>),
    Refunded,
    AlreadyRefunded,
    /// Timeout, 5xx or no connection.
    Unavailable,
}

/// A call to the IoT gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IotCall {
    StartCycle(StartCycleCommand),
    FindCycles { machine_id: Text, execute_key: Text },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IotOutcome {
    Started(Text),
    AlreadyStarted(Text),
    Busy,
    Offline,
    /// The gateway's 504: the machine may or may not have started.
    GatewayTimeout,
    /// No answer within `PAYMENTS_IOT_TIMEOUT_MS`, or no connection: as ambiguous as a 504.
    NoAnswer,
    /// `410 expired`: the command came after its `not_after`; it never ran.
    Expired,
    Cycles(Vec<CycleRecord>),
}

/// What the core wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Store(StoreOp),
    Psp(PspCall),
    Iot(IotCall),
    Reply(Reply),
}

/// The outcome of the last effect, fed back to the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Store(StoreResult),
    Psp(PspOutcome),
    Iot(IotOutcome),
}

/// Where fresh identifiers come from (seeded in the simulator, random live).
pub trait IdSource {
    fn next_uuid(&mut self) -> Uuid;
}

/// One replica's view of the stack: its deployed config and bug switches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    pub canary: CanaryConfig,
    pub settings: StackSettings,
    pub bugs: BugSet,
}

/// A request in progress inside the stack.
#[derive(Debug)]
pub struct Operation {
    step: Step,
}

#[derive(Debug)]
enum Step {
    Authorize(AuthorizeRequest),
    Lookup,
    Audit,
    Confirm(ConfirmRequest, ConfirmStep),
    Execute(Text, ExecuteStep),
    Sweep(Box<Sweep>),
    Done,
}

#[derive(Debug)]
enum ConfirmStep {
    Load,
    CheckCharge(Box<PaymentRecord>),
    Write,
    /// The payment expired; is its charge captured after all (a late capture)?
    CheckLateCharge(Box<PaymentRecord>),
    /// Handing the late charge to the compensation sweep.
    Reopen,
}

#[derive(Debug)]
enum ExecuteStep {
    Load,
    Claim,
    /// Asking the machine before a (re)send, or after an ambiguous answer.
    Probe {
        payment: Box<PaymentRecord>,
        then_send: bool,
    },
    Send {
        payment: Box<PaymentRecord>,
        resent: bool,
    },
    Record(Text),
    Release(Reply),
}

/// The compensation sweep: a bounded queue of overdue payments, one at a time.
#[derive(Debug)]
struct Sweep {
    queue: VecDeque<PaymentRecord>,
    current: Option<(PaymentRecord, SweepStep)>,
    report: SweepReport,
    /// The recently expired payments were listed (the second listing).
    listed_expired: bool,
}

#[derive(Debug)]
enum SweepStep {
    LookupCharges,
    ProbeMachine,
    RecordFound,
    Claim,
    Refund,
    Finish,
}

impl Stack {
    pub fn new(canary: CanaryConfig, settings: StackSettings, bugs: BugSet) -> Self {
        Stack { canary, settings, bugs }
    }

    /// The gate as this replica applies it (bug switches included).
    fn admits(&self, condominio: Uuid) -> bool {
        if self.bugs.has(StackBug::InvertedAllowlist) && self.canary.mode == CanaryMode::Allowlist {
            return self.canary.allowlist.binary_search(&condominio).is_err();
        }
        self.canary.admits(condominio)
    }

    /// Starts `request`; returns the operation and its first effect.
    pub fn start(&self, request: Request, now: Millis, ids: &mut dyn IdSource) -> (Operation, Effect) {
        let mut operation = Operation { step: Step::Done };
        let effect = match request {
            Request::Authorize(request) => self.authorize(&mut operation, request, now, ids),
            Request::Confirm(request) => match validate_confirm(&request) {
                Ok(id) => {
                    operation.step = Step::Confirm(request, ConfirmStep::Load);
                    Effect::Store(StoreOp::Get(id))
                }
                Err(message) => invalid(message),
            },
            Request::ExecuteCycle(request) => match validate_execute(&request) {
                Ok(id) => {
                    operation.step = Step::Execute(request.execute_key, ExecuteStep::Load);
                    Effect::Store(StoreOp::Get(id))
                }
                Err(message) => invalid(message),
            },
            Request::GetPayment(id) => match validate::uuid("payment_id", &id) {
                Ok(id) => {
                    operation.step = Step::Lookup;
                    Effect::Store(StoreOp::Get(id))
                }
                Err(message) => invalid(message),
            },
            Request::AuditByProviderRef(key) => {
                self.audit(&mut operation, "provider_ref", key, StoreOp::FindByProviderRef)
            }
            Request::AuditByIdempotencyKey(key) => {
                self.audit(&mut operation, "idempotency_key", key, StoreOp::FindByIdempotencyKey)
            }
            Request::CompensationSweep => {
                let cutoff = now.saturating_sub(self.settings.cycle_ttl);
                let sweep = Sweep {
                    queue: VecDeque::new(),
                    current: None,
                    report: SweepReport::default(),
                    listed_expired: self.bugs.has(StackBug::LateCaptureKept),
                };
                operation.step = Step::Sweep(Box::new(sweep));
                Effect::Store(StoreOp::ListOverdue { created_before: cutoff, limit: SWEEP_BATCH_MAX })
            }
        };
        (operation, effect)
    }

    /// Feeds the outcome of the last effect; returns the next effect.
    pub fn resume(&self, operation: &mut Operation, input: Input, now: Millis, ids: &mut dyn IdSource) -> Effect {
        let step = std::mem::replace(&mut operation.step, Step::Done);
        match (step, input) {
            (Step::Authorize(request), Input::Store(result)) => self.authorized(operation, request, result, now, ids),
            (Step::Lookup, Input::Store(result)) => match result {
                StoreResult::Done(payment) => Effect::Reply(Reply::Payment(Box::new(payment.view()))),
                _ => Effect::Reply(Reply::error(ErrorCode::NotFound, "no such payment")),
            },
            (Step::Audit, Input::Store(StoreResult::Found(rows))) => {
                Effect::Reply(Reply::Payments(rows.iter().map(PaymentRecord::view).collect()))
            }
            (Step::Confirm(request, step), input) => self.confirm(operation, request, step, input, ids),
            (Step::Execute(key, step), input) => self.execute(operation, key, step, input, now, ids),
            (Step::Sweep(mut sweep), input) => {
                let effect = self.sweep(&mut sweep, input, now);
                if !matches!(effect, Effect::Reply(_)) {
                    operation.step = Step::Sweep(sweep);
                }
                effect
            }
            (step, input) => panic!("driver fed {input:?} to an operation at {step:?}"),
        }
    }

    fn authorize(
        &self,
        operation: &mut Operation,
        request: AuthorizeRequest,
        now: Millis,
        ids: &mut dyn IdSource,
    ) -> Effect {
        let condominio = match validate_authorize(&request) {
            Ok(condominio) => condominio,
            Err(message) => return invalid(message),
        };
        // The gate comes first: a denied condominium gets no payment, replay or not.
        if !self.admits(condominio) {
            return Effect::Reply(Reply::error(ErrorCode::CanaryNotAllowed, "condominium not in the POS canary"));
        }
        let record = PaymentRecord::authorized(new_payment(&request, condominio, ids), now);
        operation.step = Step::Authorize(request);
        Effect::Store(StoreOp::Insert(Box::new(record)))
    }

    /// The insert answered: a new payment (201), a replay (200), or a conflict.
    fn authorized(
        &self,
        operation: &mut Operation,
        request: AuthorizeRequest,
        result: StoreResult,
        now: Millis,
        ids: &mut dyn IdSource,
    ) -> Effect {
        match result {
            StoreResult::Done(payment) => {
                Effect::Reply(Reply::Authorized { payment: Box::new(payment.view()), created: true })
            }
            StoreResult::Existing(payment) if !same_authorize(&payment, &request) => {
                reply_error(ErrorCode::IdempotencyKeyConflict, "idempotency_key reused with a different request")
            }
            StoreResult::Existing(payment) if self.bugs.has(StackBug::AuthorizeReplayNewPayment) => {
                // The bug: the replay is taken for a new purchase and mints a second payment.
                let record = PaymentRecord::authorized(new_payment(&request, payment.condominio_id, ids), now);
                operation.step = Step::Authorize(request);
                Effect::Store(StoreOp::InsertReplayCopy(Box::new(record)))
            }
            StoreResult::Existing(payment) => {
                Effect::Reply(Reply::Authorized { payment: Box::new(payment.view()), created: false })
            }
            other => panic!("authorize insert answered {other:?}"),
        }
    }

    fn audit(&self, operation: &mut Operation, field: &str, key: Text, op: fn(Text) -> StoreOp) -> Effect {
        if let Err(message) = validate::key(field, &key) {
            return invalid(message);
        }
        operation.step = Step::Audit;
        Effect::Store(op(key))
    }

    fn confirm(
        &self,
        operation: &mut Operation,
        request: ConfirmRequest,
        step: ConfirmStep,
        input: Input,
        ids: &mut dyn IdSource,
    ) -> Effect {
        match (step, input) {
            (ConfirmStep::Load, Input::Store(StoreResult::Done(payment))) => {
                if payment.idempotency_key != request.idempotency_key {
                    return invalid("idempotency_key does not match the payment's authorize");
                }
                if self.bugs.has(StackBug::GateBlocksInflight) && !self.admits(payment.condominio_id) {
                    return Effect::Reply(Reply::error(
                        ErrorCode::CanaryNotAllowed,
                        "condominium not in the POS canary",
                    ));
                }
                match payment.state {
                    PaymentState::Authorized => {
                        let call = PspCall::GetCharge(request.provider_ref.clone());
                        operation.step = Step::Confirm(request, ConfirmStep::CheckCharge(payment));
                        Effect::Psp(call)
                    }
                    PaymentState::Expired if !self.bugs.has(StackBug::LateCaptureKept) => {
                        let call = PspCall::GetCharge(request.provider_ref.clone());
                        operation.step = Step::Confirm(request, ConfirmStep::CheckLateCharge(payment));
                        Effect::Psp(call)
                    }
                    PaymentState::Confirmed | PaymentState::Executed
                        if self.bugs.has(StackBug::NonidempotentConfirm)
                            && payment.provider_ref.as_ref() == Some(&request.provider_ref) =>
                    {
                        operation.step = Step::Confirm(request.clone(), ConfirmStep::Write);
                        Effect::Store(confirm_op(payment.id, &request, ids, true))
                    }
                    _ => confirm_replay(&payment, &request),
                }
            }
            (ConfirmStep::Load, Input::Store(_)) => Effect::Reply(Reply::error(ErrorCode::NotFound, "no such payment")),
            (ConfirmStep::CheckCharge(payment), Input::Psp(outcome)) => {
                if let Err((code, message)) = check_charge(&payment, outcome) {
                    return reply_error(code, message);
                }
                let op = confirm_op(payment.id, &request, ids, false);
                operation.step = Step::Confirm(request, ConfirmStep::Write);
                Effect::Store(op)
            }
            (ConfirmStep::CheckLateCharge(payment), Input::Psp(outcome)) => match check_charge(&payment, outcome) {
                // Captured after the sweep expired the payment: refund it.
                Ok(()) => {
                    let provider_ref = Some(request.provider_ref.clone());
                    operation.step = Step::Confirm(request, ConfirmStep::Reopen);
                    Effect::Store(StoreOp::ClaimCompensation {
                        id: payment.id,
                        from: PaymentState::Expired,
                        seen_attempts: payment.execute_attempts,
                        honour_lease: false,
                        provider_ref,
                    })
                }
                Err((ErrorCode::ProviderUnavailable, message)) => reply_error(ErrorCode::ProviderUnavailable, message),
                Err(_) => confirm_replay(&payment, &request),
            },
            (ConfirmStep::Reopen, Input::Store(_)) => {
                reply_error(ErrorCode::InvalidState, "payment expired before its charge; the charge will be refunded")
            }
            (ConfirmStep::Write, Input::Store(result)) => match result {
                StoreResult::Done(payment) => Effect::Reply(confirmed(&payment)),
                StoreResult::Conflict(payment) => confirm_replay(&payment, &request),
                StoreResult::ProviderRefTaken => Effect::Reply(Reply::error(
                    ErrorCode::ProviderRefConflict,
                    "the charge is already tied to another payment",
                )),
                _ => Effect::Reply(Reply::error(ErrorCode::NotFound, "no such payment")),
            },
            (step, input) => panic!("confirm at {step:?} fed {input:?}"),
        }
    }

    fn execute(
        &self,
        operation: &mut Operation,
        key: Text,
        step: ExecuteStep,
        input: Input,
        now: Millis,
        ids: &mut dyn IdSource,
    ) -> Effect {
        let (next, effect) = match (step, input) {
            (ExecuteStep::Load, Input::Store(StoreResult::Done(payment))) => self.execute_loaded(&payment, &key, now),
            (ExecuteStep::Load, Input::Store(_)) => (None, reply_error(ErrorCode::NotFound, "no such payment")),
            (ExecuteStep::Claim, Input::Store(result)) => self.execute_claimed(result, &key, ids),
            (ExecuteStep::Probe { payment, then_send }, Input::Iot(outcome)) => {
                self.probe_answered(payment, then_send, outcome, ids)
            }
            (ExecuteStep::Send { payment, resent }, Input::Iot(outcome)) => {
                self.send_answered(payment, resent, outcome, ids)
            }
            (ExecuteStep::Record(cycle_id), Input::Store(result)) => match result {
                StoreResult::Done(payment) => (None, executed(&payment, cycle_id)),
                // The machine started: say so, whatever the row says (checkers judge the rest).
                StoreResult::Conflict(payment) => (None, executed(&payment, cycle_id)),
                _ => (None, reply_error(ErrorCode::NotFound, "no such payment")),
            },
            (ExecuteStep::Release(reply), Input::Store(_)) => (None, Effect::Reply(reply)),
            (step, input) => panic!("execute-cycle at {step:?} fed {input:?}"),
        };
        if let Some(next) = next {
            operation.step = Step::Execute(key, next);
        }
        effect
    }

    fn execute_loaded(&self, payment: &PaymentRecord, key: &Text, now: Millis) -> (Option<ExecuteStep>, Effect) {
        if self.bugs.has(StackBug::GateBlocksInflight) && !self.admits(payment.condominio_id) {
            return (None, reply_error(ErrorCode::CanaryNotAllowed, "condominium not in the POS canary"));
        }
        if payment.execute_key.as_ref() != Some(key) {
            return (None, reply_error(ErrorCode::InvalidState, "execute_key does not match a confirmed payment"));
        }
        match payment.state {
            PaymentState::Executed => {
                let cycle_id = payment.cycle_id.clone().expect("an executed payment has a cycle");
                (None, executed(payment, cycle_id))
            }
            PaymentState::Confirmed => {
                let lease_for = 2 * self.settings.iot_timeout;
                let replica_now = self.bugs.has(StackBug::LeaseOnReplicaClock).then_some(now);
                let claim = StoreOp::ClaimExecution { id: payment.id, lease_for, replica_now };
                (Some(ExecuteStep::Claim), Effect::Store(claim))
            }
            _ => (None, reply_error(ErrorCode::InvalidState, "payment is not confirmed")),
        }
    }

    fn execute_claimed(
        &self,
        result: StoreResult,
        key: &Text,
        ids: &mut dyn IdSource,
    ) -> (Option<ExecuteStep>, Effect) {
        match result {
            StoreResult::Done(payment) => {
                // A previous attempt may have reached the machine: ask before sending.
                let ask_first = payment.execute_attempts > 1 && !self.bugs.has(StackBug::ResendAfterTimeout);
                if ask_first {
                    let call = find_cycles(&payment);
                    (Some(ExecuteStep::Probe { payment, then_send: true }), call)
                } else {
                    self.send(payment, false, ids)
                }
            }
            StoreResult::LeaseHeld(_) => {
                (None, reply_error(ErrorCode::IotFailed, "an execution is in progress; retry"))
            }
            StoreResult::Conflict(payment)
                if payment.state == PaymentState::Executed && payment.execute_key.as_ref() == Some(key) =>
            {
                let cycle_id = payment.cycle_id.clone().expect("an executed payment has a cycle");
                (None, executed(&payment, cycle_id))
            }
            StoreResult::Conflict(_) => (None, reply_error(ErrorCode::InvalidState, "payment is not confirmed")),
            _ => (None, reply_error(ErrorCode::NotFound, "no such payment")),
        }
    }

    fn send_answered(
        &self,
        payment: Box<PaymentRecord>,
        resent: bool,
        outcome: IotOutcome,
        ids: &mut dyn IdSource,
    ) -> (Option<ExecuteStep>, Effect) {
        match outcome {
            IotOutcome::Started(cycle_id) | IotOutcome::AlreadyStarted(cycle_id) => record(&payment, cycle_id),
            IotOutcome::GatewayTimeout | IotOutcome::NoAnswer => {
                if self.bugs.has(StackBug::ResendAfterTimeout) && !resent {
                    return self.send(payment, true, ids);
                }
                // Ambiguous: the machine may have started. Find out before anything else.
                let call = find_cycles(&payment);
                (Some(ExecuteStep::Probe { payment, then_send: false }), call)
            }
            IotOutcome::Busy | IotOutcome::Offline => self.release(&payment, "the machine did not start; retry"),
            IotOutcome::Expired => self.release(&payment, "the command expired before it reached the machine; retry"),
            IotOutcome::Cycles(_) => panic!("a start command answered with a cycle list"),
        }
    }

    /// Sends the start command, fenced by the lease: the gateway never
    /// delivers it after the lease ends, so no one who waits the lease out
    /// (a retry, the sweep) can be overtaken by it.
    fn send(&self, payment: Box<PaymentRecord>, resent: bool, ids: &mut dyn IdSource) -> (Option<ExecuteStep>, Effect) {
        let fenced = !self.bugs.has(StackBug::UnfencedStart);
        let command = StartCycleCommand {
            machine_id: payment.machine_id.clone(),
            command_id: ids.next_uuid(),
            payment_id: payment.id,
            execute_key: payment.execute_key.clone().expect("only confirmed payments reach the machine"),
            not_after: payment.lease_until.filter(|_| fenced),
        };
        (Some(ExecuteStep::Send { payment, resent }), Effect::Iot(IotCall::StartCycle(command)))
    }

    /// Gives the lease back — ours only: after a long pause another attempt
    /// may hold it now. (`unfenced-start` also releases after an ambiguous
    /// send, as the stack did before fencing.)
    fn release(&self, payment: &PaymentRecord, message: &str) -> (Option<ExecuteStep>, Effect) {
        let reply = Reply::error(ErrorCode::IotFailed, message);
        let attempt = Some(payment.execute_attempts).filter(|_| !self.bugs.has(StackBug::UnfencedStart));
        (Some(ExecuteStep::Release(reply)), Effect::Store(StoreOp::ReleaseExecution { id: payment.id, attempt }))
    }

    /// The machine's log answered: record a cycle it ran, or (re)send, or give up for now.
    fn probe_answered(
        &self,
        payment: Box<PaymentRecord>,
        then_send: bool,
        outcome: IotOutcome,
        ids: &mut dyn IdSource,
    ) -> (Option<ExecuteStep>, Effect) {
        match outcome {
            IotOutcome::Cycles(cycles) if !cycles.is_empty() => record(&payment, cycles[0].cycle_id.clone()),
            IotOutcome::Cycles(_) if then_send => self.send(payment, false, ids),
            // Nothing was sent this attempt: the lease can go.
            _ if then_send => self.release(&payment, "the gateway did not answer; retry"),
            IotOutcome::Cycles(_) => self.keep_lease(&payment, "the machine has not started yet; retry"),
            _ => self.keep_lease(&payment, "the gateway did not answer; retry"),
        }
    }

    /// After an ambiguous send the command may still reach the machine until
    /// its `not_after` — the lease's end — so the lease is kept: a retry
    /// waits it out instead of racing the command in flight.
    fn keep_lease(&self, payment: &PaymentRecord, message: &str) -> (Option<ExecuteStep>, Effect) {
        if self.bugs.has(StackBug::UnfencedStart) {
            return self.release(payment, message);
        }
        (None, reply_error(ErrorCode::IotFailed, message))
    }

    fn sweep(&self, sweep: &mut Sweep, input: Input, now: Millis) -> Effect {
        match sweep.current.take() {
            None => {
                let StoreResult::Found(rows) = unwrap_store(input) else { panic!("sweep listing fed a non-list") };
                sweep.queue = rows.into();
            }
            Some((payment, step)) => {
                if let Some(effect) = self.sweep_step(sweep, payment, step, input) {
                    return effect;
                }
            }
        }
        self.sweep_next(sweep, now)
    }

    /// Starts on the next overdue payment, or replies when the queue is empty.
    fn sweep_next(&self, sweep: &mut Sweep, now: Millis) -> Effect {
        while let Some(payment) = sweep.queue.pop_front() {
            let first = match payment.state {
                PaymentState::Authorized => {
                    Some((SweepStep::LookupCharges, Effect::Psp(PspCall::ChargesForPayment(payment.id))))
                }
                PaymentState::Confirmed => self.sweep_confirmed(&payment, now),
                PaymentState::Compensating => Some((SweepStep::Refund, refund_call(&payment))),
                PaymentState::Expired => {
                    Some((SweepStep::LookupCharges, Effect::Psp(PspCall::ChargesForPayment(payment.id))))
                }
                _ => None,
            };
            match first {
                Some((step, effect)) => {
                    sweep.current = Some((payment, step));
                    return effect;
                }
                None => sweep.report.backlog += u32::from(!payment.state.is_final()),
            }
        }
        if !sweep.listed_expired {
            sweep.listed_expired = true;
            let since = now.saturating_sub(LATE_CAPTURE_WINDOW);
            return Effect::Store(StoreOp::ListRecentlyExpired { since, limit: SWEEP_BATCH_MAX });
        }
        let report = &mut sweep.report;
        report.alert = report.backlog > 0 || report.compensated > 0;
        Effect::Reply(Reply::Sweep(std::mem::take(report)))
    }

    /// A confirmed payment past the TTL: refund it, unless a cycle may have started.
    fn sweep_confirmed(&self, payment: &PaymentRecord, now: Millis) -> Option<(SweepStep, Effect)> {
        let careless = self.bugs.has(StackBug::RefundRacesCycle);
        if careless {
            return Some((SweepStep::Claim, claim_compensation(payment, false, None)));
        }
        if payment.lease_live(now) {
            return None; // an execution is in flight; leave it to its owner
        }
        if payment.execute_attempts > 0 {
            return Some((SweepStep::ProbeMachine, find_cycles(payment)));
        }
        Some((SweepStep::Claim, claim_compensation(payment, true, None)))
    }

    /// Advances the sweep on the current payment. `None` means: move on.
    fn sweep_step(&self, sweep: &mut Sweep, payment: PaymentRecord, step: SweepStep, input: Input) -> Option<Effect> {
        let honour_lease = !self.bugs.has(StackBug::RefundRacesCycle);
        let (next, effect) = match (step, input) {
            (SweepStep::LookupCharges, Input::Psp(PspOutcome::Charges(charges))) => {
                match charges.iter().find(|charge| charge.status == ChargeStatus::Captured) {
                    Some(charge) => (
                        SweepStep::Claim,
                        claim_compensation(&payment, honour_lease, Some(charge.provider_ref.clone())),
                    ),
                    // Still nothing captured for an expired payment: look again next time.
                    None if payment.state == PaymentState::Expired => return None,
                    // No captured charge (none, declined or already refunded): nothing was paid.
                    None => (
                        SweepStep::Finish,
                        Effect::Store(StoreOp::Finish { id: payment.id, to: PaymentState::Expired }),
                    ),
                }
            }
            (SweepStep::ProbeMachine, Input::Iot(IotOutcome::Cycles(cycles))) => match cycles.first() {
                Some(cycle) => (
                    SweepStep::RecordFound,
                    Effect::Store(StoreOp::RecordCycle { id: payment.id, cycle_id: cycle.cycle_id.clone() }),
                ),
                None => (SweepStep::Claim, claim_compensation(&payment, true, None)),
            },
            (SweepStep::RecordFound, Input::Store(_)) => return None,
            (SweepStep::Claim, Input::Store(StoreResult::Done(claimed))) => (SweepStep::Refund, refund_call(&claimed)),
            (SweepStep::Refund, Input::Psp(PspOutcome::Refunded | PspOutcome::AlreadyRefunded)) => {
                (SweepStep::Finish, Effect::Store(StoreOp::Finish { id: payment.id, to: PaymentState::Compensated }))
            }
            (SweepStep::Finish, Input::Store(StoreResult::Done(finished))) => {
                match finished.state {
                    PaymentState::Compensated => sweep.report.compensated += 1,
                    PaymentState::Expired => sweep.report.expired += 1,
                    _ => {}
                }
                sweep.report.payment_ids.push(finished.id);
                return None;
            }
            // Unavailable PSP or gateway, a lost race, a missing row: still waiting.
            (_, input) => {
                sweep.report.backlog += u32::from(still_open(&input, &payment));
                return None;
            }
        };
        sweep.current = Some((payment, next));
        Some(effect)
    }
}

// ---- Small pieces the operations share ----

fn invalid(message: impl Into<String>) -> Effect {
    reply_error(ErrorCode::InvalidRequest, message)
}

fn reply_error(code: ErrorCode, message: impl Into<String>) -> Effect {
    Effect::Reply(Reply::error(code, message))
}

fn unwrap_store(input: Input) -> StoreResult {
    match input {
        Input::Store(result) => result,
        other => panic!("expected a store result, got {other:?}"),
    }
}

fn validate_authorize(request: &AuthorizeRequest) -> Result<Uuid, String> {
    let condominio = validate::uuid("condominio_id", &request.condominio_id)?;
    validate::name_id("machine_id", &request.machine_id)?;
    validate::name_id("terminal_id", &request.terminal_id)?;
    validate::amount(request.amount_cents)?;
    validate::key("idempotency_key", &request.idempotency_key)?;
    Ok(condominio)
}

fn validate_confirm(request: &ConfirmRequest) -> Result<PaymentId, String> {
    let id = validate::uuid("payment_id", &request.payment_id)?;
    validate::key("provider_ref", &request.provider_ref)?;
    validate::key("idempotency_key", &request.idempotency_key)?;
    Ok(id)
}

fn validate_execute(request: &ExecuteRequest) -> Result<PaymentId, String> {
    let id = validate::uuid("payment_id", &request.payment_id)?;
    validate::key("execute_key", &request.execute_key)?;
    Ok(id)
}

/// A payment for `request`, with a fresh id.
fn new_payment(request: &AuthorizeRequest, condominio: Uuid, ids: &mut dyn IdSource) -> NewPayment {
    NewPayment {
        id: ids.next_uuid(),
        condominio_id: condominio,
        machine_id: request.machine_id.clone(),
        terminal_id: request.terminal_id.clone(),
        amount_cents: request.amount_cents,
        idempotency_key: request.idempotency_key.clone(),
    }
}

/// Is `request` the one that created `payment` (a replay, not a conflict)?
fn same_authorize(payment: &PaymentRecord, request: &AuthorizeRequest) -> bool {
    payment.machine_id == request.machine_id
        && payment.terminal_id == request.terminal_id
        && payment.amount_cents == request.amount_cents
        && Some(payment.condominio_id) == Uuid::try_parse(&request.condominio_id).ok()
}

/// Mints an execute_key: once per payment, unless the bug reissues it.
fn confirm_op(id: PaymentId, request: &ConfirmRequest, ids: &mut dyn IdSource, reissue: bool) -> StoreOp {
    let execute_key: Text = format!("exk-{}", ids.next_uuid().simple()).into();
    StoreOp::Confirm { id, provider_ref: request.provider_ref.clone(), execute_key, reissue }
}

/// The charge must be captured, belong to this payment and have its amount.
fn check_charge(payment: &PaymentRecord, outcome: PspOutcome) -> Result<(), (ErrorCode, &'static str)> {
    let charge = match outcome {
        PspOutcome::Charge(Some(charge)) => charge,
        PspOutcome::Charge(None) => return Err((ErrorCode::PaymentNotCaptured, "the PSP knows no such charge")),
        _ => return Err((ErrorCode::ProviderUnavailable, "the PSP did not answer")),
    };
    if charge.payment_id != payment.id {
        return Err((ErrorCode::ProviderRefConflict, "the charge belongs to another payment"));
    }
    if charge.status != ChargeStatus::Captured || charge.amount_cents != payment.amount_cents {
        return Err((ErrorCode::PaymentNotCaptured, "the charge is not captured for this amount"));
    }
    Ok(())
}

fn confirmed(payment: &PaymentRecord) -> Reply {
    Reply::Confirmed {
        payment_id: payment.id,
        provider_ref: payment.provider_ref.clone().expect("a confirmed payment has a provider_ref"),
        execute_key: payment.execute_key.clone().expect("a confirmed payment has an execute_key"),
    }
}

/// A confirm for a payment past `authorized`: a replay, or a refusal.
fn confirm_replay(payment: &PaymentRecord, request: &ConfirmRequest) -> Effect {
    let confirmed_state = matches!(payment.state, PaymentState::Confirmed | PaymentState::Executed);
    if confirmed_state && payment.provider_ref.as_ref() == Some(&request.provider_ref) {
        return Effect::Reply(confirmed(payment));
    }
    if confirmed_state {
        return reply_error(ErrorCode::InvalidState, "payment already confirmed with another provider_ref");
    }
    reply_error(ErrorCode::InvalidState, "payment was compensated or expired")
}

fn executed(payment: &PaymentRecord, cycle_id: Text) -> Effect {
    Effect::Reply(Reply::Executed { payment_id: payment.id, cycle_id })
}

fn find_cycles(payment: &PaymentRecord) -> Effect {
    Effect::Iot(IotCall::FindCycles {
        machine_id: payment.machine_id.clone(),
        execute_key: payment.execute_key.clone().expect("only confirmed payments reach the machine"),
    })
}

fn record(payment: &PaymentRecord, cycle_id: Text) -> (Option<ExecuteStep>, Effect) {
    let op = StoreOp::RecordCycle { id: payment.id, cycle_id: cycle_id.clone() };
    (Some(ExecuteStep::Record(cycle_id)), Effect::Store(op))
}

fn claim_compensation(payment: &PaymentRecord, honour_lease: bool, provider_ref: Option<Text>) -> Effect {
    Effect::Store(StoreOp::ClaimCompensation {
        id: payment.id,
        from: payment.state,
        seen_attempts: payment.execute_attempts,
        honour_lease,
        provider_ref,
    })
}

fn refund_call(payment: &PaymentRecord) -> Effect {
    match &payment.provider_ref {
        Some(provider_ref) => Effect::Psp(PspCall::Refund {
            provider_ref: provider_ref.clone(),
            idempotency_key: format!("refund-{}", payment.id).into(),
        }),
        None => panic!("payment {} is compensating without a charge", payment.id),
    }
}

/// Is a payment the sweep could not settle still waiting past the TTL?
fn still_open(input: &Input, payment: &PaymentRecord) -> bool {
    match input {
        Input::Store(StoreResult::Conflict(row) | StoreResult::Done(row)) => !row.state.is_final(),
        Input::Store(StoreResult::Missing) => false,
        _ => !payment.state.is_final(),
    }
}

#[cfg(test)]
mod tests {
    //! The core driven by hand: a real store, and scripted PSP and gateway
    //! answers, so each rule of the contract is seen effect by effect.

    use super::*;
    use crate::contract::{CanaryMode, ChargeStatus, PaymentStatus};
    use crate::stack::store::{MemoryStore, Store};

    const CONDO: &str = "6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01";

    struct Counter(u128);

    impl IdSource for Counter {
        fn next_uuid(&mut self) -> Uuid {
            self.0 += 1;
            Uuid::from_u128(self.0)
        }
    }

    /// Runs a request to its reply; `world` answers PSP and IoT calls.
    fn drive(
        stack: &Stack,
        store: &mut MemoryStore,
        ids: &mut Counter,
        request: Request,
        now: Millis,
        world: &mut dyn FnMut(&Effect) -> Input,
    ) -> (Reply, Vec<Effect>) {
        let (mut operation, mut effect) = stack.start(request, now, ids);
        let mut seen = Vec::new();
        loop {
            let input = match &effect {
                Effect::Reply(reply) => return (reply.clone(), seen),
                Effect::Store(op) => Input::Store(store.apply(op.clone(), now)),
                other => world(other),
            };
            seen.push(effect);
            effect = stack.resume(&mut operation, input, now, ids);
        }
    }

    fn stack(bugs: &[StackBug]) -> Stack {
        Stack::new(CanaryConfig::off(), StackSettings::default(), BugSet::new(bugs))
    }

    fn authorize(key: &str, amount_cents: i64) -> Request {
        Request::Authorize(AuthorizeRequest {
            condominio_id: CONDO.into(),
            machine_id: "m-1".into(),
            terminal_id: "pos-1".into(),
            amount_cents,
            idempotency_key: key.into(),
        })
    }

    fn captured(payment_id: PaymentId) -> impl FnMut(&Effect) -> Input {
        move |effect| match effect {
            Effect::Psp(PspCall::GetCharge(provider_ref)) => Input::Psp(PspOutcome::Charge(Some(Charge {
                provider_ref: provider_ref.clone(),
                payment_id,
                amount_cents: 1500,
                status: ChargeStatus::Captured,
            }))),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn confirm(payment_id: PaymentId) -> Request {
        Request::Confirm(ConfirmRequest {
            payment_id: payment_id.to_string(),
            provider_ref: "ch_1".into(),
            idempotency_key: "k1".into(),
        })
    }

    /// Authorizes and confirms one payment; returns its id and execute_key.
    fn confirmed_payment(stack: &Stack, store: &mut MemoryStore, ids: &mut Counter) -> (PaymentId, Text) {
        let (reply, _) = drive(stack, store, ids, authorize("k1", 1500), 0, &mut |e| panic!("{e:?}"));
        let Reply::Authorized { payment, created: true } = reply else { panic!("{reply:?}") };
        let (reply, _) = drive(stack, store, ids, confirm(payment.payment_id), 1, &mut captured(payment.payment_id));
        let Reply::Confirmed { execute_key, .. } = reply else { panic!("{reply:?}") };
        (payment.payment_id, execute_key)
    }

    #[test]
    fn authorize_is_idempotent_and_gated() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let mut no_world = |e: &Effect| panic!("{e:?}");
        let (first, _) = drive(&stack, &mut store, &mut ids, authorize("k1", 1500), 0, &mut no_world);
        let (again, _) = drive(&stack, &mut store, &mut ids, authorize("k1", 1500), 5, &mut no_world);
        assert_eq!(first.http_status(), 201);
        assert_eq!(again.http_status(), 200);
        let (Reply::Authorized { payment: a, .. }, Reply::Authorized { payment: b, .. }) = (&first, &again) else {
            panic!()
        };
        assert_eq!(a.payment_id, b.payment_id);
        let (conflict, _) = drive(&stack, &mut store, &mut ids, authorize("k1", 999), 6, &mut no_world);
        assert_eq!(conflict.error_code(), Some(ErrorCode::IdempotencyKeyConflict));
        let (bad, _) = drive(&stack, &mut store, &mut ids, authorize("k2", 0), 7, &mut no_world);
        assert_eq!(bad.error_code(), Some(ErrorCode::InvalidRequest));
        let gated = Stack::new(
            CanaryConfig::new(CanaryMode::Allowlist, vec![], vec![]),
            StackSettings::default(),
            BugSet::default(),
        );
        let (denied, _) = drive(&gated, &mut store, &mut ids, authorize("k3", 1500), 8, &mut no_world);
        assert_eq!(denied.error_code(), Some(ErrorCode::CanaryNotAllowed));
    }

    #[test]
    fn a_replayed_authorize_mints_a_second_payment_when_the_bug_is_on() {
        let (buggy, mut store, mut ids) =
            (stack_with(StackBug::AuthorizeReplayNewPayment), MemoryStore::default(), Counter(0));
        let mut no_world = |e: &Effect| panic!("{e:?}");
        let (first, _) = drive(&buggy, &mut store, &mut ids, authorize("k1", 1500), 0, &mut no_world);
        let (again, _) = drive(&buggy, &mut store, &mut ids, authorize("k1", 1500), 5, &mut no_world);
        let (Reply::Authorized { payment: a, .. }, Reply::Authorized { payment: b, .. }) = (&first, &again) else {
            panic!("{first:?} {again:?}")
        };
        assert_ne!(a.payment_id, b.payment_id, "the bug answers a replay with another payment");
        assert_eq!(b.idempotency_key, a.idempotency_key);
        let (conflict, _) = drive(&buggy, &mut store, &mut ids, authorize("k1", 999), 6, &mut no_world);
        assert_eq!(
            conflict.error_code(),
            Some(ErrorCode::IdempotencyKeyConflict),
            "a different request still conflicts"
        );
        let audit = store.apply(StoreOp::FindByIdempotencyKey("k1".into()), 7);
        assert!(matches!(audit, StoreResult::Found(ref rows) if rows.len() == 2), "the audit shows both: {audit:?}");
    }

    #[test]
    fn execute_key_is_minted_once_unless_the_bug_is_on() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let (payment, key) = confirmed_payment(&stack, &mut store, &mut ids);
        let (replay, effects) = drive(&stack, &mut store, &mut ids, confirm(payment), 2, &mut captured(payment));
        assert!(matches!(replay, Reply::Confirmed { ref execute_key, .. } if *execute_key == key));
        assert!(effects.iter().all(|e| !matches!(e, Effect::Psp(_))), "a replay needs no PSP call");
        let buggy = stack_with(StackBug::NonidempotentConfirm);
        let (reissued, _) = drive(&buggy, &mut store, &mut ids, confirm(payment), 3, &mut captured(payment));
        assert!(matches!(reissued, Reply::Confirmed { ref execute_key, .. } if *execute_key != key));
    }

    fn stack_with(bug: StackBug) -> Stack {
        stack(&[bug])
    }

    fn execute(payment: PaymentId, key: &Text) -> Request {
        Request::ExecuteCycle(ExecuteRequest { payment_id: payment.to_string(), execute_key: key.clone() })
    }

    /// A gateway that times out on the first start and whose machine did start.
    fn ambiguous_gateway(payment: PaymentId, key: Text) -> impl FnMut(&Effect) -> Input {
        move |effect| match effect {
            Effect::Iot(IotCall::StartCycle(_)) => Input::Iot(IotOutcome::GatewayTimeout),
            Effect::Iot(IotCall::FindCycles { .. }) => Input::Iot(IotOutcome::Cycles(vec![CycleRecord {
                cycle_id: "cy-1".into(),
                execute_key: key.clone(),
                payment_id: payment,
                started_at: 2,
            }])),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_ambiguous_timeout_is_settled_by_asking_the_machine() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let (payment, key) = confirmed_payment(&stack, &mut store, &mut ids);
        let mut gateway = ambiguous_gateway(payment, key.clone());
        let (reply, effects) = drive(&stack, &mut store, &mut ids, execute(payment, &key), 2, &mut gateway);
        assert!(matches!(reply, Reply::Executed { ref cycle_id, .. } if &**cycle_id == "cy-1"), "{reply:?}");
        let starts = effects.iter().filter(|e| matches!(e, Effect::Iot(IotCall::StartCycle(_)))).count();
        assert_eq!(starts, 1, "no second command after a 504");
        let buggy = stack_with(StackBug::ResendAfterTimeout);
        let mut store = MemoryStore::default();
        let (payment, key) = confirmed_payment(&buggy, &mut store, &mut ids);
        let mut gateway = ambiguous_gateway(payment, key.clone());
        let (_, effects) = drive(&buggy, &mut store, &mut ids, execute(payment, &key), 2, &mut gateway);
        let starts = effects.iter().filter(|e| matches!(e, Effect::Iot(IotCall::StartCycle(_)))).count();
        assert_eq!(starts, 2, "the bug resends without asking");
    }

    #[test]
    fn the_sweep_asks_the_machine_before_it_refunds() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let (payment, key) = confirmed_payment(&stack, &mut store, &mut ids);
        // The command went out and the answer was lost: the stack does not know.
        let mut lost = |effect: &Effect| match effect {
            Effect::Iot(_) => Input::Iot(IotOutcome::NoAnswer),
            other => panic!("unexpected {other:?}"),
        };
        let (reply, _) = drive(&stack, &mut store, &mut ids, execute(payment, &key), 2, &mut lost);
        assert_eq!(reply.error_code(), Some(ErrorCode::IotFailed));
        let after_ttl = StackSettings::default().cycle_ttl + 60_000;
        let mut gateway = ambiguous_gateway(payment, key.clone());
        let (report, effects) =
            drive(&stack, &mut store, &mut ids, Request::CompensationSweep, after_ttl, &mut gateway);
        assert!(matches!(report, Reply::Sweep(ref r) if r.compensated == 0), "{report:?}");
        assert!(
            effects.iter().all(|e| !matches!(e, Effect::Psp(PspCall::Refund { .. }))),
            "no refund of a washed payment"
        );
        let view = store.apply(StoreOp::Get(payment), after_ttl);
        assert!(matches!(view, StoreResult::Done(p) if p.status() == PaymentStatus::Executed));
    }

    /// A gateway that answers 504 to every start and finds no cycle.
    fn silent_gateway(effect: &Effect) -> Input {
        match effect {
            Effect::Iot(IotCall::StartCycle(_)) => Input::Iot(IotOutcome::GatewayTimeout),
            Effect::Iot(IotCall::FindCycles { .. }) => Input::Iot(IotOutcome::Cycles(vec![])),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_start_command_is_fenced_and_an_ambiguous_send_keeps_the_lease() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let (payment, key) = confirmed_payment(&stack, &mut store, &mut ids);
        let (reply, effects) = drive(&stack, &mut store, &mut ids, execute(payment, &key), 100, &mut silent_gateway);
        assert_eq!(reply.error_code(), Some(ErrorCode::IotFailed));
        let lease_end = 100 + 2 * StackSettings::default().iot_timeout;
        let fenced =
            effects.iter().any(|e| matches!(e, Effect::Iot(IotCall::StartCycle(c)) if c.not_after == Some(lease_end)));
        assert!(fenced, "the command carries the lease's end: {effects:?}");
        // The command may still land until then: a retry waits the lease out.
        let (retry, effects) = drive(&stack, &mut store, &mut ids, execute(payment, &key), 200, &mut silent_gateway);
        assert_eq!(retry.error_code(), Some(ErrorCode::IotFailed));
        assert!(effects.iter().all(|e| !matches!(e, Effect::Iot(_))), "no second command while the lease lives");
        let (after, effects) =
            drive(&stack, &mut store, &mut ids, execute(payment, &key), lease_end, &mut silent_gateway);
        assert_eq!(after.error_code(), Some(ErrorCode::IotFailed));
        assert!(effects.iter().any(|e| matches!(e, Effect::Iot(IotCall::StartCycle(_)))), "after the lease it sends");
        // The old behaviour: no fence, and the lease goes at once.
        let buggy = stack_with(StackBug::UnfencedStart);
        let mut store = MemoryStore::default();
        let (payment, key) = confirmed_payment(&buggy, &mut store, &mut ids);
        let (_, effects) = drive(&buggy, &mut store, &mut ids, execute(payment, &key), 100, &mut silent_gateway);
        assert!(effects.iter().any(|e| matches!(e, Effect::Iot(IotCall::StartCycle(c)) if c.not_after.is_none())));
        let (_, effects) = drive(&buggy, &mut store, &mut ids, execute(payment, &key), 200, &mut silent_gateway);
        assert!(effects.iter().any(|e| matches!(e, Effect::Iot(IotCall::StartCycle(_)))), "the bug resends at once");
    }

    #[test]
    fn the_lease_is_judged_on_the_store_clock_unless_the_bug_is_on() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let (payment, _) = confirmed_payment(&stack, &mut store, &mut ids);
        let lease = |bug: bool| StoreOp::ClaimExecution {
            id: payment,
            lease_for: 10_000,
            replica_now: bug.then_some(0), // a replica a minute behind
        };
        let StoreResult::Done(row) = store.apply(lease(false), 60_000) else { panic!("claimed") };
        assert_eq!(row.lease_until, Some(70_000));
        let StoreResult::LeaseHeld(_) = store.apply(lease(false), 65_000) else { panic!("the lease holds") };
        let mut store = MemoryStore::default();
        let (payment, _) = confirmed_payment(&stack, &mut store, &mut ids);
        let skewed = StoreOp::ClaimExecution { id: payment, lease_for: 10_000, replica_now: Some(0) };
        let StoreResult::Done(_) = store.apply(skewed.clone(), 60_000) else { panic!("claimed") };
        assert!(matches!(store.apply(skewed, 60_001), StoreResult::Done(_)), "a lease over before it began");
    }

    /// A PSP that knows one captured charge `ch_1` of `payment`.
    fn late_charge(payment: PaymentId) -> impl FnMut(&Effect) -> Input {
        move |effect| match effect {
            Effect::Psp(PspCall::GetCharge(_)) => captured(payment)(effect),
            Effect::Psp(PspCall::ChargesForPayment(_)) => Input::Psp(PspOutcome::Charges(vec![Charge {
                provider_ref: "ch_1".into(),
                payment_id: payment,
                amount_cents: 1500,
                status: ChargeStatus::Captured,
            }])),
            Effect::Psp(PspCall::Refund { .. }) => Input::Psp(PspOutcome::Refunded),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Authorizes a payment and lets the sweep expire it (no charge yet).
    fn expired_payment(stack: &Stack, store: &mut MemoryStore, ids: &mut Counter) -> (PaymentId, Millis) {
        let (reply, _) = drive(stack, store, ids, authorize("k1", 1500), 0, &mut |e| panic!("{e:?}"));
        let Reply::Authorized { payment, .. } = reply else { panic!("{reply:?}") };
        let no_charges = |effect: &Effect| match effect {
            Effect::Psp(PspCall::ChargesForPayment(_)) => Input::Psp(PspOutcome::Charges(vec![])),
            other => panic!("unexpected {other:?}"),
        };
        let after_ttl = StackSettings::default().cycle_ttl + 1;
        drive(stack, store, ids, Request::CompensationSweep, after_ttl, &mut { no_charges });
        let StoreResult::Done(row) = store.apply(StoreOp::Get(payment.payment_id), after_ttl) else { panic!() };
        assert_eq!(row.state, PaymentState::Expired);
        (payment.payment_id, after_ttl)
    }

    #[test]
    fn a_card_captured_after_the_payment_expired_is_refunded() {
        let (stack, mut store, mut ids) = (stack(&[]), MemoryStore::default(), Counter(0));
        let (payment, expired_at) = expired_payment(&stack, &mut store, &mut ids);
        // The terminal comes back and confirms: refused, and handed to the sweep.
        let (reply, _) =
            drive(&stack, &mut store, &mut ids, confirm(payment), expired_at + 1, &mut late_charge(payment));
        assert_eq!(reply.error_code(), Some(ErrorCode::InvalidState));
        let (report, effects) =
            drive(&stack, &mut store, &mut ids, Request::CompensationSweep, expired_at + 2, &mut late_charge(payment));
        assert!(matches!(report, Reply::Sweep(ref r) if r.compensated == 1), "{report:?}");
        assert!(effects.iter().any(|e| matches!(e, Effect::Psp(PspCall::Refund { .. }))));
        // Without the confirm: the sweep finds the late capture on its own.
        let mut store = MemoryStore::default();
        let (payment, expired_at) = expired_payment(&stack, &mut store, &mut ids);
        let (report, _) =
            drive(&stack, &mut store, &mut ids, Request::CompensationSweep, expired_at + 5, &mut late_charge(payment));
        assert!(matches!(report, Reply::Sweep(ref r) if r.compensated == 1), "{report:?}");
        // The old behaviour: the late charge stays.
        let buggy = stack_with(StackBug::LateCaptureKept);
        let mut store = MemoryStore::default();
        let (payment, expired_at) = expired_payment(&buggy, &mut store, &mut ids);
        let (reply, _) =
            drive(&buggy, &mut store, &mut ids, confirm(payment), expired_at + 1, &mut late_charge(payment));
        assert_eq!(reply.error_code(), Some(ErrorCode::InvalidState));
        let (report, _) =
            drive(&buggy, &mut store, &mut ids, Request::CompensationSweep, expired_at + 2, &mut late_charge(payment));
        assert!(matches!(report, Reply::Sweep(ref r) if r.compensated == 0), "{report:?}");
    }
}
