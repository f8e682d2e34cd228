//! A customer at a POS terminal buying one wash: authorize → card charge at
//! the PSP → confirm → execute-cycle, retrying on the same keys after a
//! timeout or a retryable error, and giving up after a bounded number of
//! attempts. The engine schedules; this module decides what comes next.

use serde::Serialize;
use uuid::Uuid;

use crate::contract::{
    AuthorizeRequest, ConfirmRequest, Endpoint, ErrorCode, ExecuteRequest, PaymentId, PaymentStatus, Reply, Request,
    Text,
};

/// Where a purchase stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PurchaseStep {
    Authorize,
    /// Waiting for the card charge at the PSP.
    Charge,
    Confirm,
    Execute(Text),
    Done(PurchaseOutcome),
}

/// How a purchase ended, from the customer's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseOutcome {
    /// The machine was released.
    Washed,
    /// The canary gate refused: the legacy flow serves this condominium.
    NotInCanary,
    /// The card was declined.
    Declined,
    /// Out of attempts, or walked away, at this endpoint.
    GaveUp(Endpoint),
    /// The stack refused for good (a non-retryable error) at this endpoint.
    Refused(Endpoint),
}

/// What the terminal does after an answer (or none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send the current step's request now (a new step: attempt 1).
    Send,
    /// Send it again after a back-off.
    Retry,
    /// Charge the card at the PSP.
    Charge,
    /// The purchase is over.
    Finished(PurchaseOutcome),
}

/// What the terminal heard for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard<'a> {
    Reply(&'a Reply),
    /// No answer before the terminal's timeout (lost either way, or slow).
    Nothing,
}

#[derive(Clone, Debug)]
pub struct Purchase {
    pub condominium: u32,
    pub condominio_id: Uuid,
    pub machine: u32,
    pub machine_id: Text,
    pub terminal_id: Text,
    pub amount_cents: i64,
    pub idempotency_key: Text,
    pub payment_id: Option<PaymentId>,
    pub provider_ref: Option<Text>,
    pub step: PurchaseStep,
    /// Attempts at the current step, starting at 1.
    pub attempt: u8,
    /// Execute keys the terminal has been given but not yet run.
    pending_keys: Vec<Text>,
    done_keys: Vec<Text>,
}

impl Purchase {
    pub fn new(
        condominium: u32,
        condominio_id: Uuid,
        machine: u32,
        machine_id: Text,
        terminal_id: Text,
        amount_cents: i64,
        serial: u32,
    ) -> Self {
        let idempotency_key = format!("{terminal_id}:{serial}").into();
        Purchase {
            condominium,
            condominio_id,
            machine,
            machine_id,
            terminal_id,
            amount_cents,
            idempotency_key,
            payment_id: None,
            provider_ref: None,
            step: PurchaseStep::Authorize,
            attempt: 1,
            pending_keys: Vec::new(),
            done_keys: Vec::new(),
        }
    }

    /// A purchase at `machine` from `terminal` (fleet indices) of the fleet.
    pub fn in_fleet(
        fleet: &crate::world::Fleet,
        (machine, terminal): (u32, u32),
        amount_cents: i64,
        serial: u32,
    ) -> Self {
        let machine_info = &fleet.machines[machine as usize];
        let condominium = machine_info.condominium;
        let site = &fleet.condominiums[condominium as usize];
        let terminal_id = fleet.terminals[terminal as usize].id.clone();
        Purchase::new(condominium, site.id, machine, machine_info.id.clone(), terminal_id, amount_cents, serial)
    }

    /// The request for the current step.
    pub fn request(&self) -> Request {
        let payment_id = || self.payment_id.expect("a payment id before confirm").to_string();
        match &self.step {
            PurchaseStep::Authorize => Request::Authorize(AuthorizeRequest {
                condominio_id: self.condominio_id.to_string(),
                machine_id: self.machine_id.clone(),
                terminal_id: self.terminal_id.clone(),
                amount_cents: self.amount_cents,
                idempotency_key: self.idempotency_key.clone(),
            }),
            PurchaseStep::Confirm => Request::Confirm(ConfirmRequest {
                payment_id: payment_id(),
                provider_ref: self.provider_ref.clone().expect("a provider_ref before confirm"),
                idempotency_key: self.idempotency_key.clone(),
            }),
            PurchaseStep::Execute(key) => {
                Request::ExecuteCycle(ExecuteRequest { payment_id: payment_id(), execute_key: key.clone() })
            }
            step => panic!("no request to send at {step:?}"),
        }
    }

    pub fn endpoint(&self) -> Option<Endpoint> {
        match self.step {
            PurchaseStep::Authorize => Some(Endpoint::Authorize),
            PurchaseStep::Confirm => Some(Endpoint::Confirm),
            PurchaseStep::Execute(_) => Some(Endpoint::ExecuteCycle),
            _ => None,
        }
    }

    /// The status a reply tells the customer, if it tells one.
    pub fn told(reply: &Reply) -> Option<(PaymentId, PaymentStatus)> {
        match reply {
            Reply::Authorized { payment, .. } => Some((payment.payment_id, PaymentStatus::Authorized)),
            Reply::Confirmed { payment_id, .. } => Some((*payment_id, PaymentStatus::Confirmed)),
            Reply::Executed { payment_id, .. } => Some((*payment_id, PaymentStatus::Executed)),
            _ => None,
        }
    }

    /// Reacts to what the terminal heard for the current step's request.
    /// `max_attempts` bounds the retries; `walks_away` is the customer's
    /// decision (drawn by the engine) to leave after a failure.
    pub fn on_heard(&mut self, heard: Heard<'_>, max_attempts: u8, walks_away: bool) -> Next {
        let endpoint = self.endpoint().expect("a request was in flight");
        let failure = match heard {
            Heard::Nothing => None,
            Heard::Reply(Reply::Error { code, .. }) => Some(*code),
            Heard::Reply(reply) => return self.advance(reply),
        };
        match failure {
            Some(ErrorCode::CanaryNotAllowed) if endpoint == Endpoint::Authorize => {
                self.finish(PurchaseOutcome::NotInCanary)
            }
            Some(code) if !code.retryable() => self.finish(PurchaseOutcome::Refused(endpoint)),
            _ if walks_away || self.attempt >= max_attempts => self.finish(PurchaseOutcome::GaveUp(endpoint)),
            _ => {
                self.attempt += 1;
                Next::Retry
            }
        }
    }

    /// The card charge answered: captured (with its provider_ref) or declined.
    pub fn on_charged(&mut self, provider_ref: Text, captured: bool) -> Next {
        assert_eq!(self.step, PurchaseStep::Charge);
        if !captured {
            return self.finish(PurchaseOutcome::Declined);
        }
        self.provider_ref = Some(provider_ref);
        self.enter(PurchaseStep::Confirm)
    }

    /// A late or duplicate confirmation: a POS trusts every execute_key it is
    /// given (the contract says it never changes), so a new one is run too.
    pub fn on_extra_confirmation(&mut self, reply: &Reply) -> Option<Next> {
        let Reply::Confirmed { execute_key, .. } = reply else { return None };
        let current = matches!(&self.step, PurchaseStep::Execute(key) if key == execute_key);
        if current || self.done_keys.contains(execute_key) || self.pending_keys.contains(execute_key) {
            return None;
        }
        match self.step {
            PurchaseStep::Done(PurchaseOutcome::Washed) => Some(self.enter(PurchaseStep::Execute(execute_key.clone()))),
            PurchaseStep::Execute(_) => {
                self.pending_keys.push(execute_key.clone());
                None
            }
            _ => None,
        }
    }

    fn advance(&mut self, reply: &Reply) -> Next {
        match (&self.step, reply) {
            (PurchaseStep::Authorize, Reply::Authorized { payment, .. }) => {
                self.payment_id = Some(payment.payment_id);
                self.step = PurchaseStep::Charge;
                Next::Charge
            }
            (PurchaseStep::Confirm, Reply::Confirmed { execute_key, .. }) => {
                self.enter(PurchaseStep::Execute(execute_key.clone()))
            }
            (PurchaseStep::Execute(key), Reply::Executed { .. }) => {
                self.done_keys.push(key.clone());
                match self.pending_keys.pop() {
                    Some(next) => self.enter(PurchaseStep::Execute(next)),
                    None => self.finish(PurchaseOutcome::Washed),
                }
            }
            (step, reply) => panic!("a {reply:?} does not answer {step:?}"),
        }
    }

    fn enter(&mut self, step: PurchaseStep) -> Next {
        self.step = step;
        self.attempt = 1;
        Next::Send
    }

    fn finish(&mut self, outcome: PurchaseOutcome) -> Next {
        self.step = PurchaseStep::Done(outcome);
        Next::Finished(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase() -> Purchase {
        Purchase::new(0, Uuid::from_u128(9), 0, "m-1".into(), "pos-1".into(), 1500, 1)
    }

    fn confirmed(key: &str) -> Reply {
        Reply::Confirmed { payment_id: Uuid::from_u128(1), provider_ref: "ch".into(), execute_key: key.into() }
    }

    #[test]
    fn retries_are_bounded_and_gate_refusals_end_the_purchase() {
        let mut p = purchase();
        assert_eq!(p.on_heard(Heard::Nothing, 3, false), Next::Retry);
        assert_eq!(p.on_heard(Heard::Nothing, 3, false), Next::Retry);
        assert_eq!(p.on_heard(Heard::Nothing, 3, false), Next::Finished(PurchaseOutcome::GaveUp(Endpoint::Authorize)));
        let mut p = purchase();
        let denied = Reply::error(ErrorCode::CanaryNotAllowed, "no");
        assert_eq!(p.on_heard(Heard::Reply(&denied), 3, false), Next::Finished(PurchaseOutcome::NotInCanary));
    }

    #[test]
    fn a_new_execute_key_is_run_too() {
        let mut p = purchase();
        p.payment_id = Some(Uuid::from_u128(1));
        p.step = PurchaseStep::Confirm;
        assert_eq!(p.on_heard(Heard::Reply(&confirmed("k1")), 3, false), Next::Send);
        assert_eq!(p.on_extra_confirmation(&confirmed("k1")), None, "the same key is not run twice");
        let executed = Reply::Executed { payment_id: Uuid::from_u128(1), cycle_id: "c".into() };
        assert_eq!(p.on_heard(Heard::Reply(&executed), 3, false), Next::Finished(PurchaseOutcome::Washed));
        assert_eq!(p.on_extra_confirmation(&confirmed("k2")), Some(Next::Send));
        assert_eq!(p.step, PurchaseStep::Execute("k2".into()));
    }
}
