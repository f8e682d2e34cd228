//! The bodies of the world's API that posim serves around a stack
//! (CONTRACT.md, "The world's API"): the PSP's charges and refunds and the IoT
//! gateway's commands and cycle logs. A stack is a client of them; posim's
//! terminals are a client of `POST /v1/charges`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Charge, CycleRecord, PaymentId, Text};

/// `POST /v1/charges`. `purchase`, `condominium` and `declined` are posim's
/// own: its terminals say which purchase they charge for (stable ids for
/// ground truth and fault rolls) and whether the card is declined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub payment_id: PaymentId,
    pub amount_cents: i64,
    pub idempotency_key: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condominium: Option<u32>,
    #[serde(default)]
    pub declined: bool,
}

/// `GET /v1/charges?payment_id=P`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargesQuery {
    pub payment_id: PaymentId,
}

/// `GET /v1/charges?payment_id=P`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeList {
    pub charges: Vec<Charge>,
}

/// `POST /v1/charges/{provider_ref}/refund`'s answer (the key travels in the
/// `Idempotency-Key` header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub provider_ref: Text,
    pub status: super::ChargeStatus,
    pub refund_id: Text,
}

/// An error of the PSP or the gateway: `{"error": "already_refunded"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldError {
    pub error: Text,
}

impl WorldError {
    /// A second refund of a charge under another key (409).
    pub const ALREADY_REFUNDED: &'static str = "already_refunded";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum CommandAction {
    StartCycle,
}

/// `POST /v1/machines/{machine_id}/commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub command_id: Uuid,
    pub payment_id: PaymentId,
    pub execute_key: Text,
    pub action: CommandAction,
    /// Never deliver the command after this instant (contract 1.1; optional).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::instant::optional")]
    pub not_after: Option<crate::time::Millis>,
}

/// What the gateway answers to a command (the status goes with it: 200, 409, 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum CommandResult {
    Started,
    /// A machine whose firmware dedupes by `execute_key` saw this key before.
    AlreadyStarted,
    /// A cycle of another payment is running (409).
    Busy,
    Offline,
    /// The command reached the gateway after its `not_after` (410): it was
    /// not delivered.
    Expired,
}

/// The gateway's answer to a command; `cycle_id` comes with `started` and `already_started`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    pub result: CommandResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_id: Option<Text>,
}

impl CommandReply {
    pub fn new(result: CommandResult, cycle_id: Option<Text>) -> Self {
        CommandReply { result, cycle_id }
    }

    /// The HTTP status of this answer (CONTRACT.md).
    pub fn http_status(&self) -> u16 {
        match self.result {
            CommandResult::Started | CommandResult::AlreadyStarted => 200,
            CommandResult::Busy => 409,
            CommandResult::Offline => 503,
            CommandResult::Expired => 410,
        }
    }
}

/// `GET /v1/machines/{machine_id}/cycles?execute_key=K`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CyclesQuery {
    pub execute_key: String,
}

/// `GET /v1/machines/{machine_id}/cycles?execute_key=K`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleList {
    pub cycles: Vec<CycleRecord>,
}
