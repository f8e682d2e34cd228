//! The bodies of the stack's API (CONTRACT.md, "The stack's API") as serde
//! types: what the reference stack writes and what posim reads back from any
//! stack. Requests are in the parent module; unknown fields are ignored.

use serde::{Deserialize, Serialize};

use super::{CanaryConfig, CondominioId, ErrorCode, PaymentId, PaymentStatus, PaymentView, SweepReport, Text};

/// `GET /health`: the configuration this process applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: Text,
    pub version: Text,
    pub canary: CanaryConfig,
}

/// `POST /api/payments/authorize`'s answer (201 new, 200 replay).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorized {
    pub payment_id: PaymentId,
    pub status: PaymentStatus,
    pub condominio_id: CondominioId,
    pub machine_id: Text,
    pub amount_cents: i64,
    pub idempotency_key: Text,
}

/// `POST /api/payments/confirm`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    pub payment_id: PaymentId,
    pub status: PaymentStatus,
    pub provider_ref: Text,
    pub execute_key: Text,
}

/// `POST /api/payments/execute-cycle`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub payment_id: PaymentId,
    pub status: PaymentStatus,
    pub cycle_id: Text,
}

/// `GET /api/payments?provider_ref=R` or `?idempotency_key=K`: the audit of runbook §4C.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub provider_ref: Option<Text>,
    pub idempotency_key: Option<Text>,
}

/// The audit's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentList {
    pub payments: Vec<PaymentView>,
}

/// Every error: `{"error": "<code>", "message": "<text for a human>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorCode,
    #[serde(default)]
    pub message: String,
}

/// Any answer of the stack, as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ReplyBody {
    Authorized(Authorized),
    Confirmed(Confirmed),
    Executed(Executed),
    Payment(Box<PaymentView>),
    Payments(PaymentList),
    Sweep(SweepReport),
    Error(ErrorBody),
}
