//! What the world answered each call the stack made to it (the PSP's and
//! the gateway's endpoints), with the payment the call concerns, so that a
//! violation's witness can show the calls that led to it: a cycles query
//! answered `503 offline` before a second start command, a refund that timed
//! out. Built once here from the world's own answers; both engines record it.

use serde::Serialize;

use super::gateway::{CyclesAnswer, GatewayAnswer, Route};
use super::psp::{PspAnswer, RefundOutcome};
use crate::contract::{PaymentId, Text};
use crate::faults::WorldEndpoint;

/// One call the world served, as the history records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Called {
    pub endpoint: WorldEndpoint,
    /// The payment the call concerns, when the world knows it (a provider_ref
    /// it never issued, an execute_key it never saw: none).
    pub payment: Option<PaymentId>,
    pub answer: WorldAnswer,
}

/// What the world answered, in the contract's terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorldAnswer {
    /// Nothing before the stack's timeout (lost on the way, either way).
    NoAnswer,
    /// The gateway's `504` (the machine may have started, or may still).
    GatewayTimeout,
    /// The PSP's `5xx`.
    Unavailable,
    /// `GET /v1/charges/{ref}`: found (`200`) or not (`404`).
    Charge {
        found: bool,
    },
    /// `GET /v1/charges?payment_id=`: how many charges.
    Charges {
        count: u32,
    },
    /// A refund made now (`true`) or the replay of one (`false`).
    Refunded {
        new: bool,
    },
    AlreadyRefunded,
    NotFound,
    NotCaptured,
    /// The machine started this cycle (`200 started`).
    Started {
        cycle: Text,
    },
    AlreadyStarted {
        cycle: Text,
    },
    Busy,
    Offline,
    Expired,
    UnknownMachine,
    /// `GET …/cycles?execute_key=`: how many cycles the machine's log holds.
    Cycles {
        count: u32,
    },
}

impl WorldAnswer {
    /// In words, with the HTTP status the stack gets.
    pub fn describe(&self) -> String {
        match self {
            WorldAnswer::NoAnswer => "nothing before the stack's timeout".into(),
            WorldAnswer::GatewayTimeout => "504 gateway_timeout".into(),
            WorldAnswer::Unavailable => "503 unavailable".into(),
            WorldAnswer::Charge { found: true } => "200 with the charge".into(),
            WorldAnswer::Charge { found: false } | WorldAnswer::NotFound => "404 not_found".into(),
            WorldAnswer::Charges { count } => format!("200 with {count} charge(s)"),
            WorldAnswer::Refunded { new: true } => "200 refunded".into(),
            WorldAnswer::Refunded { new: false } => "200 refunded (a replay of the same key)".into(),
            WorldAnswer::AlreadyRefunded => "409 already_refunded".into(),
            WorldAnswer::NotCaptured => "409 not_captured".into(),
            WorldAnswer::Started { cycle } => format!("200 started (cycle {cycle})"),
            WorldAnswer::AlreadyStarted { cycle } => format!("200 already_started (cycle {cycle})"),
            WorldAnswer::Busy => "409 busy".into(),
            WorldAnswer::Offline => "503 offline".into(),
            WorldAnswer::Expired => "410 expired".into(),
            WorldAnswer::UnknownMachine => "404 unknown_machine".into(),
            WorldAnswer::Cycles { count } => format!("200 with {count} cycle(s)"),
        }
    }
}

/// A list's length as the history counts it.
fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl From<&PspAnswer> for WorldAnswer {
    fn from(answer: &PspAnswer) -> WorldAnswer {
        match answer {
            PspAnswer::Charge(charge) => WorldAnswer::Charge { found: charge.is_some() },
            PspAnswer::Charges(charges) => WorldAnswer::Charges { count: count(charges.len()) },
            PspAnswer::Refund(RefundOutcome::Refunded(new)) => WorldAnswer::Refunded { new: *new },
            PspAnswer::Refund(RefundOutcome::AlreadyRefunded) => WorldAnswer::AlreadyRefunded,
            PspAnswer::Refund(RefundOutcome::NotFound) => WorldAnswer::NotFound,
            PspAnswer::Refund(RefundOutcome::NotCaptured) => WorldAnswer::NotCaptured,
            PspAnswer::Timeout => WorldAnswer::NoAnswer,
            PspAnswer::Error => WorldAnswer::Unavailable,
        }
    }
}

impl From<&GatewayAnswer> for WorldAnswer {
    fn from(answer: &GatewayAnswer) -> WorldAnswer {
        match answer {
            GatewayAnswer::Started(cycle) => WorldAnswer::Started { cycle: cycle.clone() },
            GatewayAnswer::AlreadyStarted(cycle) => WorldAnswer::AlreadyStarted { cycle: cycle.clone() },
            GatewayAnswer::Busy => WorldAnswer::Busy,
            GatewayAnswer::Offline => WorldAnswer::Offline,
            GatewayAnswer::NoAnswer => WorldAnswer::NoAnswer,
            GatewayAnswer::GatewayTimeout => WorldAnswer::GatewayTimeout,
            GatewayAnswer::Expired => WorldAnswer::Expired,
        }
    }
}

impl From<&CyclesAnswer> for WorldAnswer {
    fn from(answer: &CyclesAnswer) -> WorldAnswer {
        match answer {
            CyclesAnswer::Cycles(cycles) => WorldAnswer::Cycles { count: count(cycles.len()) },
            CyclesAnswer::NoAnswer => WorldAnswer::NoAnswer,
            CyclesAnswer::Offline => WorldAnswer::Offline,
            CyclesAnswer::UnknownMachine => WorldAnswer::UnknownMachine,
        }
    }
}

/// The answer a command gets at the gateway before any machine has it
/// (none: it goes on to its machine, which answers).
pub fn routed(route: &Route) -> Option<WorldAnswer> {
    match route {
        Route::ToMachine(_) => None,
        Route::Lost => Some(WorldAnswer::NoAnswer),
        Route::UnknownMachine => Some(WorldAnswer::UnknownMachine),
        Route::Expired => Some(WorldAnswer::Expired),
        Route::Late { .. } => Some(WorldAnswer::GatewayTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_their_status_and_serialise_by_name() {
        assert_eq!(WorldAnswer::from(&CyclesAnswer::Offline).describe(), "503 offline");
        assert_eq!(WorldAnswer::from(&PspAnswer::Timeout), WorldAnswer::NoAnswer);
        assert_eq!(routed(&Route::Late { machine: 0, delay: 5 }), Some(WorldAnswer::GatewayTimeout));
        assert_eq!(routed(&Route::ToMachine(3)), None);
        let json = serde_json::to_value(WorldAnswer::Cycles { count: 2 }).ok();
        assert_eq!(json, Some(serde_json::json!({"cycles": {"count": 2}})));
        assert_eq!(serde_json::to_value(WorldAnswer::Offline).ok(), Some(serde_json::json!("offline")));
    }
}
