//! The wire contract of `CONTRACT.md`: what terminals, the stack, the PSP and
//! the IoT gateway say to each other. Both engines and the reference stack use
//! these types, so a change to the contract is a change in one place.

pub mod bodies;
pub mod canary;
pub mod instant;
pub mod names;
pub mod validate;
pub mod wire;
pub mod world_api;

#[cfg(test)]
mod round_trip_tests;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::time::Millis;

pub use canary::{CanaryConfig, CanaryMode, ConfigError, DeployConfig, StackSettings};

/// Shared, cheaply cloned text (ids and keys travel through many hands).
pub type Text = Arc<str>;
pub type PaymentId = Uuid;
pub type CondominioId = Uuid;

/// The stack's endpoints, as the KPIs and the history name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "kebab-case")]
pub enum Endpoint {
    Authorize,
    Confirm,
    ExecuteCycle,
    GetPayment,
    Audit,
    CompensationAlert,
}

impl Endpoint {
    pub const TERMINAL: [Endpoint; 3] = [Endpoint::Authorize, Endpoint::Confirm, Endpoint::ExecuteCycle];

    /// Reads an endpoint's name (`execute-cycle`), listing the names on error.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        names::parse("endpoint", text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub condominio_id: String,
    pub machine_id: Text,
    pub terminal_id: Text,
    pub amount_cents: i64,
    pub idempotency_key: Text,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmRequest {
    pub payment_id: String,
    pub provider_ref: Text,
    pub idempotency_key: Text,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub payment_id: String,
    pub execute_key: Text,
}

/// A request to the stack. Ids arrive as text: the stack validates them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Authorize(AuthorizeRequest),
    Confirm(ConfirmRequest),
    ExecuteCycle(ExecuteRequest),
    GetPayment(String),
    AuditByProviderRef(Text),
    AuditByIdempotencyKey(Text),
    CompensationSweep,
}

impl Request {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Request::Authorize(_) => Endpoint::Authorize,
            Request::Confirm(_) => Endpoint::Confirm,
            Request::ExecuteCycle(_) => Endpoint::ExecuteCycle,
            Request::GetPayment(_) => Endpoint::GetPayment,
            Request::AuditByProviderRef(_) | Request::AuditByIdempotencyKey(_) => Endpoint::Audit,
            Request::CompensationSweep => Endpoint::CompensationAlert,
        }
    }
}

/// The contract's error codes, with their HTTP status and retry rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    PaymentNotCaptured,
    CanaryNotAllowed,
    NotFound,
    IdempotencyKeyConflict,
    ProviderRefConflict,
    InvalidState,
    PayloadTooLarge,
    ProviderUnavailable,
    IotFailed,
    Unavailable,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::PaymentNotCaptured => 402,
            ErrorCode::CanaryNotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::IdempotencyKeyConflict | ErrorCode::ProviderRefConflict | ErrorCode::InvalidState => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ProviderUnavailable | ErrorCode::IotFailed => 502,
            ErrorCode::Unavailable => 503,
        }
    }

    /// May the client retry with the same key?
    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::ProviderUnavailable | ErrorCode::IotFailed | ErrorCode::Unavailable)
    }
}

/// A payment's status as the contract shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum PaymentStatus {
    Authorized,
    Confirmed,
    Executed,
    Compensated,
    Expired,
}

impl PaymentStatus {
    pub fn is_final(self) -> bool {
        matches!(self, PaymentStatus::Executed | PaymentStatus::Compensated | PaymentStatus::Expired)
    }

    /// May a payment seen in `self` later be seen in `next`? (D6: no going back.)
    pub fn may_become(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        match self {
            Authorized => true,
            Confirmed => matches!(next, Confirmed | Executed | Compensated),
            Executed | Compensated | Expired => next == self,
        }
    }
}

/// `GET /api/payments/{id}`'s body; times are RFC 3339 on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    pub payment_id: PaymentId,
    pub condominio_id: CondominioId,
    pub machine_id: Text,
    pub terminal_id: Text,
    pub amount_cents: i64,
    pub idempotency_key: Text,
    pub provider_ref: Option<Text>,
    pub execute_key: Option<Text>,
    pub cycle_id: Option<Text>,
    pub status: PaymentStatus,
    #[serde(with = "instant")]
    pub created_at: Millis,
    #[serde(with = "instant")]
    pub updated_at: Millis,
}

/// `POST /api/payments/compensation/alert`'s body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    pub expired: u32,
    pub compensated: u32,
    pub backlog: u32,
    pub alert: bool,
    pub payment_ids: Vec<PaymentId>,
}

/// The stack's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `created` tells 201 (a new payment) from 200 (a replay).
    Authorized {
        payment: Box<PaymentView>,
        created: bool,
    },
    Confirmed {
        payment_id: PaymentId,
        provider_ref: Text,
        execute_key: Text,
    },
    Executed {
        payment_id: PaymentId,
        cycle_id: Text,
    },
    Payment(Box<PaymentView>),
    Payments(Vec<PaymentView>),
    Sweep(SweepReport),
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Reply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error { code, message: message.into() }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Reply::Authorized { created: true, .. } => 201,
            Reply::Error { code, .. } => code.http_status(),
            _ => 200,
        }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Reply::Error { code, .. } => Some(*code),
            _ => None,
        }
    }
}

// ---- The world's side of the contract: PSP and IoT gateway ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum ChargeStatus {
    Captured,
    Declined,
    Refunded,
}

/// A charge in the PSP's ledger, as `GET /v1/charges/{provider_ref}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub provider_ref: Text,
    pub payment_id: PaymentId,
    pub amount_cents: i64,
    pub status: ChargeStatus,
}

/// A cycle in a machine's log, as `GET …/cycles?execute_key=` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub cycle_id: Text,
    pub execute_key: Text,
    pub payment_id: PaymentId,
    #[serde(with = "instant")]
    pub started_at: Millis,
}

/// `POST /v1/machines/{machine_id}/commands`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartCycleCommand {
    pub machine_id: Text,
    pub command_id: Uuid,
    pub payment_id: PaymentId,
    pub execute_key: Text,
    /// The fencing instant (contract 1.1): the gateway never delivers the
    /// command after it. The reference stack sends its execution lease's end.
    pub not_after: Option<Millis>,
}

/// Which firmware a machine runs (CONTRACT.md, "Firmware comes in two kinds").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    /// Ignores an `execute_key` it has already run.
    Dedupe,
    /// Runs every command it receives.
    Naive,
}
