//! The reference payments stack: a sans-IO domain [`core`] that answers
//! requests with effects, over a [`store`] that enforces the uniqueness a
//! payments system needs. The simulator and (later) the HTTP server drive the
//! same core; the bug switches re-create classic failures on purpose, so that
//! the checkers are shown to catch them.

pub mod core;
pub mod http;
pub mod pg;
pub mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use self::core::{Effect, Input, IotCall, IotOutcome, Operation, PspCall, PspOutcome, Stack};

/// A deliberate defect of the reference stack, off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StackBug {
    /// Confirm mints a fresh `execute_key` on every call and resets the payment to confirmed.
    NonidempotentConfirm,
    /// After a gateway 504 or timeout the command is sent again without asking the machine.
    ResendAfterTimeout,
    /// The sweep refunds a confirmed payment without asking the machine or honouring the execution lease.
    RefundRacesCycle,
    /// The canary gate also refuses confirm and execute-cycle.
    GateBlocksInflight,
    /// A restarted replica starts from an empty store (state kept in memory).
    StateLostOnRedeploy,
    /// The allowlist is read as a blocklist.
    InvertedAllowlist,
    /// A replayed authorize (same key, same request) creates and returns a second payment.
    AuthorizeReplayNewPayment,
}

impl StackBug {
    pub const ALL: [StackBug; 7] = [
        StackBug::NonidempotentConfirm,
        StackBug::ResendAfterTimeout,
        StackBug::RefundRacesCycle,
        StackBug::GateBlocksInflight,
        StackBug::StateLostOnRedeploy,
        StackBug::InvertedAllowlist,
        StackBug::AuthorizeReplayNewPayment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StackBug::NonidempotentConfirm => "nonidempotent-confirm",
            StackBug::ResendAfterTimeout => "resend-after-timeout",
            StackBug::RefundRacesCycle => "refund-races-cycle",
            StackBug::GateBlocksInflight => "gate-blocks-inflight",
            StackBug::StateLostOnRedeploy => "state-lost-on-redeploy",
            StackBug::InvertedAllowlist => "inverted-allowlist",
            StackBug::AuthorizeReplayNewPayment => "authorize-replay-new-payment",
        }
    }
}

impl fmt::Display for StackBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StackBug {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        StackBug::ALL.into_iter().find(|bug| bug.name() == text).ok_or_else(|| {
            let names: Vec<&str> = StackBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown stack bug `{text}`; expected one of: {}", names.join(", "))
        })
    }
}

/// The set of bug switches a stack runs with (a bit set: small and `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BugSet(u8);

impl BugSet {
    pub fn new(bugs: &[StackBug]) -> Self {
        const { assert!(StackBug::ALL.len() <= u8::BITS as usize, "one bit per bug") };
        BugSet(bugs.iter().fold(0, |bits, bug| bits | (1 << *bug as u8)))
    }

    pub fn has(self, bug: StackBug) -> bool {
        self.0 & (1 << bug as u8) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_is_named_parsed_and_held_apart() {
        for bug in StackBug::ALL {
            assert_eq!(bug.name().parse::<StackBug>(), Ok(bug), "POSIM_STACK_BUG and --stack-bug accept `{bug}`");
            let alone = BugSet::new(&[bug]);
            assert!(StackBug::ALL.iter().all(|other| alone.has(*other) == (*other == bug)), "{bug} has its own bit");
        }
        assert!("authorize-replay-new-payment".parse::<StackBug>().is_ok());
        assert!("gremlins".parse::<StackBug>().is_err());
    }
}
