//! The card acquirer (PSP) as posim plays it: a ledger of charges and refunds
//! with the contract's idempotency rules. It is ground truth for D1, D3, D4.

use rustc_hash::FxHashMap as HashMap;
use smallvec::SmallVec;

use crate::contract::{Charge, ChargeStatus, PaymentId, Text};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// A new refund (`true`) or a replay of the same key (`false`).
    Refunded(bool),
    /// A second refund under another key: `409 already_refunded`.
    AlreadyRefunded,
    NotFound,
    /// A declined charge cannot be refunded.
    NotCaptured,
}

/// A call the stack makes to the PSP (`POST /v1/charges` is the terminal's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PspRequest {
    /// `GET /v1/charges/{provider_ref}`.
    GetCharge(Text),
    /// `GET /v1/charges?payment_id=P`.
    ListCharges(PaymentId),
    /// `POST /v1/charges/{provider_ref}/refund`.
    Refund { provider_ref: Text, idempotency_key: Text },
}

/// What the PSP answers a call, faults included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PspAnswer {
    Charge(Option<Charge>),
    Charges(Vec<Charge>),
    Refund(RefundOutcome),
    /// No answer before the stack's PSP timeout.
    Timeout,
    /// A 5xx.
    Error,
}

#[derive(Default)]
pub struct PspLedger {
    /// Put in every provider_ref after `ch_` (empty: `ch_00000001`): shards
    /// sharing one database must not hand the stack the same reference.
    namespace: String,
    charges: Vec<Charge>,
    refund_keys: Vec<Option<Text>>,
    by_provider_ref: HashMap<Text, usize>,
    by_idempotency_key: HashMap<Text, usize>,
    /// A payment's charges: nearly always one, kept inline (no allocation each).
    by_payment: HashMap<PaymentId, SmallVec<[usize; 1]>>,
}

impl PspLedger {
    /// A ledger whose provider_refs read `ch_{namespace}_00000001`.
    pub fn in_namespace(namespace: &str) -> PspLedger {
        PspLedger { namespace: format!("{namespace}_"), ..PspLedger::default() }
    }

    /// `POST /v1/charges`: a replay of the key returns the same charge.
    pub fn charge(
        &mut self,
        payment_id: PaymentId,
        amount_cents: i64,
        idempotency_key: Text,
        declined: bool,
    ) -> (Charge, bool) {
        if let Some(&index) = self.by_idempotency_key.get(&idempotency_key) {
            return (self.charges[index].clone(), false);
        }
        let index = self.charges.len();
        let provider_ref: Text = format!("ch_{}{:08}", self.namespace, index + 1).into();
        let status = if declined { ChargeStatus::Declined } else { ChargeStatus::Captured };
        let charge = Charge { provider_ref: provider_ref.clone(), payment_id, amount_cents, status };
        self.charges.push(charge.clone());
        self.refund_keys.push(None);
        self.by_provider_ref.insert(provider_ref, index);
        self.by_idempotency_key.insert(idempotency_key, index);
        self.by_payment.entry(payment_id).or_default().push(index);
        (charge, true)
    }

    pub fn charges_count(&self) -> usize {
        self.charges.len()
    }

    /// `GET /v1/charges/{provider_ref}`.
    pub fn get(&self, provider_ref: &str) -> Option<Charge> {
        self.by_provider_ref.get(provider_ref).map(|&index| self.charges[index].clone())
    }

    /// `GET /v1/charges?payment_id=P`.
    pub fn for_payment(&self, payment_id: PaymentId) -> Vec<Charge> {
        let indices = self.by_payment.get(&payment_id).map_or(&[][..], |indices| indices.as_slice());
        indices.iter().map(|&index| self.charges[index].clone()).collect()
    }

    /// The payment a call is about, if the ledger knows it.
    pub fn payment_of(&self, request: &PspRequest) -> Option<PaymentId> {
        match request {
            PspRequest::GetCharge(provider_ref) | PspRequest::Refund { provider_ref, .. } => {
                self.by_provider_ref.get(provider_ref).map(|&index| self.charges[index].payment_id)
            }
            PspRequest::ListCharges(payment_id) => Some(*payment_id),
        }
    }

    /// Serves a call that no fault stopped.
    pub fn serve(&mut self, request: &PspRequest) -> PspAnswer {
        match request {
            PspRequest::GetCharge(provider_ref) => PspAnswer::Charge(self.get(provider_ref)),
            PspRequest::ListCharges(payment_id) => PspAnswer::Charges(self.for_payment(*payment_id)),
            PspRequest::Refund { provider_ref, idempotency_key } => {
                PspAnswer::Refund(self.refund(provider_ref, idempotency_key))
            }
        }
    }

    /// `POST /v1/charges/{provider_ref}/refund` with an `Idempotency-Key`.
    pub fn refund(&mut self, provider_ref: &str, idempotency_key: &Text) -> RefundOutcome {
        let Some(&index) = self.by_provider_ref.get(provider_ref) else { return RefundOutcome::NotFound };
        match (&self.refund_keys[index], self.charges[index].status) {
            (Some(key), _) if key == idempotency_key => RefundOutcome::Refunded(false),
            (Some(_), _) => RefundOutcome::AlreadyRefunded,
            (None, ChargeStatus::Captured) => {
                self.charges[index].status = ChargeStatus::Refunded;
                self.refund_keys[index] = Some(idempotency_key.clone());
                RefundOutcome::Refunded(true)
            }
            (None, _) => RefundOutcome::NotCaptured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn charges_and_refunds_are_idempotent() {
        let mut psp = PspLedger::default();
        let payment = Uuid::from_u128(1);
        let (first, new) = psp.charge(payment, 1500, "k".into(), false);
        assert!(new && first.status == ChargeStatus::Captured);
        let (again, new) = psp.charge(payment, 1500, "k".into(), false);
        assert!(!new && again == first);
        assert_eq!(psp.refund(&first.provider_ref, &"r1".into()), RefundOutcome::Refunded(true));
        assert_eq!(psp.refund(&first.provider_ref, &"r1".into()), RefundOutcome::Refunded(false));
        assert_eq!(psp.refund(&first.provider_ref, &"r2".into()), RefundOutcome::AlreadyRefunded);
        assert_eq!(psp.get(&first.provider_ref).map(|c| c.status), Some(ChargeStatus::Refunded));
        assert_eq!(psp.for_payment(payment).len(), 1);
        assert_eq!(psp.refund("nope", &"r".into()), RefundOutcome::NotFound);
    }
}
